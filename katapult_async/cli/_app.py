"""What every command shares: the group's settings, token redaction, logging, and how work runs.

:func:`run_command` runs a command's coroutine with ``asyncio.run`` under SIGINT/SIGTERM handlers
that cancel it, and turns the errors a user can cause (a bad token, an unknown interface, a
missing file) into a one-line :class:`CommandError` instead of a traceback. Every message it
prints passes through :meth:`Settings.redact`.
"""

from __future__ import annotations

import asyncio
import csv
import datetime
import json
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click
from rich.console import Console
from rich.logging import RichHandler

from katapult_async.client import TOKEN_ENV_VAR, KatapultClient
from katapult_async.errors import KatapultError

T = TypeVar("T")
FC = TypeVar("FC", bound=Callable[..., Any])

LOG_FORMATS = ("text", "json")

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_HALTED = 3
"""A rollout halted (its canary, or its failure threshold), reverted or not: the summary says."""
EXIT_ABORTED = 4
"""A bulk run stopped at an error no item could escape (a bad token, an unreachable API); 3 is
the rollout's halt."""
EXIT_INTERRUPTED = 130

_EXPECTED_ERRORS = (KatapultError, OSError, ValueError, csv.Error)
"""Errors a user can cause; shown as one line. Anything else is a bug and keeps its traceback."""


class CommandError(click.ClickException):
    """An expected failure: printed as one line on stderr, exit status 1."""

    exit_code = EXIT_FAILURE


class _Interrupted(Exception):
    """The user pressed Ctrl-C (or the process got SIGTERM) and the work was cancelled."""


def error_message(exc: BaseException) -> str:
    """One line for an error: its message (code, description, request id), else its type."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@attrs.define
class Settings:
    """The group's options, shared by every command through the click context."""

    base_url: str
    token_file: Path | None
    verbose: int
    out: Console
    secrets: list[str] = attrs.field(factory=list)
    # --pacing / --reserve of a command that sends many requests (see pacing_options)
    pacing: dict[str, Any] = attrs.field(factory=dict)
    log_format: str = "text"  # or "json" (--log-format)
    log_handler: logging.Handler | None = None  # the handler setup_logging installed

    def remember_secret(self, value: str | None) -> None:
        """Add a value that must never be shown (the token) to the redaction list."""
        if value and value.strip() and value.strip() not in self.secrets:
            self.secrets.append(value.strip())

    def redact(self, text: str) -> str:
        """Return ``text`` with every known secret replaced by ``****``."""
        for secret in self.secrets:
            text = text.replace(secret, "****")
        return text

    def read_token(self) -> str | None:
        """The token from ``--token-file``, else ``None`` (the client then reads the env var)."""
        if self.token_file is None:
            return None
        token = self.token_file.read_text(encoding="utf-8").strip()
        self.remember_secret(token)
        if not token:
            raise CommandError(f"the token file {self.token_file} is empty")
        return token

    def client(self, **options: Any) -> KatapultClient:
        """A client for ``--base-url`` with the token from the file or the environment."""
        token = self.read_token()
        if token is None and not os.environ.get(TOKEN_ENV_VAR, "").strip():
            raise CommandError(f"no API token: set {TOKEN_ENV_VAR} or pass --token-file PATH")
        return KatapultClient(token, base_url=self.base_url, **{**self.pacing, **options})

    def command_error(self, exc: BaseException) -> CommandError:
        """The one-line, redacted :class:`CommandError` for an expected error."""
        return CommandError(self.redact(error_message(exc)))


UNWRAPPED_WIDTH = 10_000
"""The console width when output is not a terminal: wide enough that no line or table wraps."""


def output_console() -> Console:
    """The console commands print to: stdout, sized to the terminal, or never wrapping when piped.

    On a terminal rich wraps to its width. Piped or redirected, rich would wrap at 80 columns, in
    the middle of ids and of commands to paste; there each printed line stays one line, and a
    table as wide as its content.
    """
    console = Console()
    if console.is_terminal:
        return console
    return Console(width=UNWRAPPED_WIDTH, soft_wrap=True)


def settings_of(ctx: click.Context) -> Settings:
    """The :class:`Settings` the group stored in the click context."""
    settings = ctx.find_object(Settings)
    assert settings is not None, "commands run under the main group"
    return settings


class _RedactingFilter(logging.Filter):
    """Replaces secrets in log records before any handler formats them."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._settings.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


LOG_CONTEXT_FIELDS = ("request_id", "interface_id", "task_id", "attempt")
"""The record attributes the library sets where known (see ``katapult_async._telemetry``)."""


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the context fields the
    record carries and the exception, if any; secrets redacted from the whole line."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in LOG_CONTEXT_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._redact(json.dumps(entry, default=str))


def _override_log_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        settings = settings_of(ctx)
        settings.log_format = value
        setup_logging(ctx, settings)


def _override_token_file(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        settings_of(ctx).token_file = value


def _override_base_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        settings_of(ctx).base_url = value


def _override_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        settings = settings_of(ctx)
        was = settings.verbose
        settings.verbose = max(was, value)
        if not was:
            setup_logging(ctx, settings)


def global_options_after_subcommand(command: click.Command, *, api: bool = True) -> None:
    """Accept the group's options after the subcommand too: ``bulk FILE --base-url URL``.

    Given there, they override the group's (they are processed after it). They are hidden from
    the subcommand's help, which would otherwise repeat them on every command: the group's help
    lists them once. ``api=False`` (the commands that run the simulator, which send nothing to
    the API) leaves ``--token-file`` and ``--base-url`` out.
    """
    if api:
        command.params.extend(
            [
                click.Option(
                    ["--token-file"],
                    type=click.Path(exists=True, dir_okay=False, path_type=Path),
                    expose_value=False,
                    callback=_override_token_file,
                    hidden=True,
                ),
                click.Option(
                    ["--base-url"], expose_value=False, callback=_override_base_url, hidden=True
                ),
            ]
        )
    command.params.extend(
        [
            click.Option(
                ["-v", "--verbose"],
                count=True,
                expose_value=False,
                callback=_override_verbose,
                hidden=True,
            ),
            click.Option(
                ["--log-format"],
                type=click.Choice(LOG_FORMATS),
                expose_value=False,
                callback=_override_log_format,
                hidden=True,
            ),
        ]
    )


def setup_logging(ctx: click.Context, settings: Settings) -> None:
    """Log the library's records to stderr at INFO (``-v``) or DEBUG (``-vv``): through rich, or
    with ``--log-format json`` as JSON lines. Without ``-v``, WARNING and up only (plain lines,
    such as that the API cannot be reached and is being retried). Called again (an option given
    after the command), it replaces the handler it installed."""
    json_lines = settings.log_format == "json"
    package_logger = logging.getLogger("katapult_async")
    if settings.log_handler is None:
        previous = package_logger.level

        def restore() -> None:
            if settings.log_handler is not None:
                package_logger.removeHandler(settings.log_handler)
                settings.log_handler = None
            package_logger.setLevel(previous)

        ctx.call_on_close(restore)
    else:
        package_logger.removeHandler(settings.log_handler)
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler()  # sys.stderr
        handler.setFormatter(JsonLinesFormatter(settings.redact))
    elif not settings.verbose:
        handler = logging.StreamHandler()  # sys.stderr
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = RichHandler(
            console=Console(stderr=True), show_path=settings.verbose > 1, rich_tracebacks=False
        )
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter(settings))
    levels = {0: logging.WARNING, 1: logging.INFO}
    package_logger.setLevel(levels.get(settings.verbose, logging.DEBUG))
    package_logger.addHandler(handler)
    settings.log_handler = handler


def run_command(
    settings: Settings,
    work: Callable[[], Coroutine[Any, Any, T]],
    *,
    on_interrupt: Callable[[], None] | None = None,
) -> T:
    """Run ``work()`` in a new event loop; map expected errors and Ctrl-C to exit statuses."""
    try:
        return asyncio.run(_interruptible(work()))
    except (_Interrupted, KeyboardInterrupt):
        if on_interrupt is not None:
            on_interrupt()
        else:
            click.echo("interrupted", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    except _EXPECTED_ERRORS as exc:
        raise settings.command_error(exc) from None


async def _interruptible(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` as a task that SIGINT and SIGTERM cancel, then raise :class:`_Interrupted`.

    Cancelling (rather than letting KeyboardInterrupt strike anywhere) lets the work clean up:
    the bulk engine stops submitting, keeps its journal consistent and closes the session.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, interrupt)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            continue
        installed.append(sig)
    try:
        return await task
    except asyncio.CancelledError:
        if interrupted:
            raise _Interrupted from None
        raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _pacing_setting(ctx: click.Context, param: click.Parameter, value: object) -> object:
    """Puts ``--pacing`` / ``--reserve`` where :meth:`Settings.client` reads them."""
    if value is not None and param.name is not None:
        settings_of(ctx).pacing[param.name] = value
    return value


def pacing_options(command: FC) -> FC:
    """``--rate-limit``, ``--window``, ``--pacing`` and ``--reserve``: what a command that sends
    many requests is told of the token's budget, and how to spend it (``bulk``, ``plan``,
    ``undo``)."""
    command = click.option(
        "--reserve",
        type=click.FloatRange(min=0, max=1, max_open=True),
        expose_value=False,
        callback=_pacing_setting,
        help="Share of the limit to leave for other users of the token (e.g. 0.1) "
        "[default: none with burst pacing, 0.01 with smooth].",
    )(command)
    command = click.option(
        "--pacing",
        type=click.Choice(["burst", "smooth"]),
        expose_value=False,
        callback=_pacing_setting,
        help="burst: spend the budget as fast as it allows, wait only when it is spent; "
        "smooth: spread it evenly over the window (a token shared with people) "
        "[default: burst].",
    )(command)
    command = click.option(
        "--window",
        type=click.FloatRange(min=0, min_open=True),
        default=60.0,
        show_default=True,
        help="Rate-limit window in seconds.",
    )(command)
    return click.option(
        "--rate-limit",
        type=click.IntRange(min=1),
        help="Requests permitted per window, if known (else learnt from the API's headers).",
    )(command)
