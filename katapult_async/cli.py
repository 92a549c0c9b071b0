"""The ``katapult-async`` command: click commands over plain async functions, shown with rich.

Each command parses its options, then hands one coroutine to :func:`_run`, which runs it with
``asyncio.run`` and turns the errors a user can cause (a bad token, an unknown interface, a
missing file) into a one-line message on stderr and a non-zero exit status, never a traceback.

Exit statuses: 0 success; 1 an error, or a bulk run in which an item ended ``failed`` or
``error``; 2 a usage error; 130 interrupted by Ctrl-C (or SIGTERM).

The API token is read from ``--token-file`` or ``KATAPULT_API_TOKEN`` and never printed: every
message and log line passes through :meth:`_Settings.redact`, and the journal and results files
hold no token. (``simulate`` and ``demo`` print the simulator's fake local token on purpose.)
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import csv
import itertools
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import aiohttp
import attrs
import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from katapult_async._validate import validate_identifier
from katapult_async.bulk import BulkProgress, DuplicateItemError
from katapult_async.client import DEFAULT_BASE_URL, TOKEN_ENV_VAR, KatapultClient
from katapult_async.errors import (
    KatapultError,
    SpeedProfileAlreadyAssignedError,
    TaskFailedError,
)
from katapult_async.models import Outcome, SpeedProfileRef, Task, TaskStatus, UpdateResult

if TYPE_CHECKING:
    from katapult_async.testing import KatapultSimulator, SimulatorConfig

__all__ = ["main"]

T = TypeVar("T")

REFRESH_PER_SECOND = 4
"""Live display refreshes per second: smooth enough to read, cheap on a shared CPU."""

MAX_FAILURES_SHOWN = 20
"""Failures listed after a bulk run; the rest are counted ("and N more")."""

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

_EXPECTED_ERRORS = (KatapultError, OSError, ValueError, csv.Error)
"""Errors a user can cause; shown as one line. Anything else is a bug and keeps its traceback."""


# --- settings, token, errors -----------------------------------------------------------------


class CommandError(click.ClickException):
    """An expected failure: printed as one line on stderr, exit status 1."""

    exit_code = EXIT_FAILURE


class _Interrupted(Exception):
    """The user pressed Ctrl-C (or the process got SIGTERM) and the work was cancelled."""


def _describe(exc: BaseException) -> str:
    """One line for an error: its message (code, description, request id), else its type."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@attrs.define
class _Settings:
    """The group's options, shared by every command through the click context."""

    base_url: str
    token_file: Path | None
    verbose: int
    out: Console
    secrets: list[str] = attrs.field(factory=list)

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
        return KatapultClient(token, base_url=self.base_url, **options)


class _RedactingFilter(logging.Filter):
    """Replaces secrets in log records before any handler formats them."""

    def __init__(self, settings: _Settings) -> None:
        super().__init__()
        self._settings = settings

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._settings.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _setup_logging(ctx: click.Context, settings: _Settings) -> None:
    """Log the library's records to stderr through rich at INFO (``-v``) or DEBUG (``-vv``)."""
    if not settings.verbose:
        return
    handler = RichHandler(
        console=Console(stderr=True), show_path=settings.verbose > 1, rich_tracebacks=False
    )
    handler.addFilter(_RedactingFilter(settings))
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    package_logger = logging.getLogger("katapult_async")
    previous = package_logger.level
    package_logger.setLevel(logging.DEBUG if settings.verbose > 1 else logging.INFO)
    package_logger.addHandler(handler)

    def restore() -> None:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous)

    ctx.call_on_close(restore)


def _run(
    settings: _Settings,
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
        raise CommandError(settings.redact(_describe(exc))) from None


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


def _settings(ctx: click.Context) -> _Settings:
    settings = ctx.find_object(_Settings)
    assert settings is not None, "commands run under the main group"
    return settings


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# --- the group -----------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"Read the API token from this file (default: the {TOKEN_ENV_VAR} environment variable).",
)
@click.option(
    "--base-url",
    default=DEFAULT_BASE_URL,
    show_default=True,
    envvar="KATAPULT_BASE_URL",
    help="Katapult Core API base URL. Plain http:// is refused unless the host is loopback.",
)
@click.option("-v", "--verbose", count=True, help="Log to stderr: -v for INFO, -vv for DEBUG.")
@click.version_option(package_name="katapult-async", prog_name="katapult-async")
@click.pass_context
def main(ctx: click.Context, token_file: Path | None, base_url: str, verbose: int) -> None:
    """Change the network speed profiles of Katapult VM network interfaces.

    Start with `katapult-async demo`: a bulk update of 500 interfaces against the built-in API
    simulator, paced to its rate limit, with no token needed.
    """
    settings = _Settings(base_url=base_url, token_file=token_file, verbose=verbose, out=Console())
    settings.remember_secret(os.environ.get(TOKEN_ENV_VAR))
    ctx.obj = settings
    _setup_logging(ctx, settings)


# --- update / task -------------------------------------------------------------------------


def _task_progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=REFRESH_PER_SECOND,
        transient=True,
    )


class _TaskBar:
    """Follows one task on a rich progress bar (the poller's ``on_progress`` callback)."""

    def __init__(self, progress: Progress, label: str = "") -> None:
        self._progress = progress
        self._prefix = f"{label} " if label else ""
        self._id = progress.add_task(f"{self._prefix}submitting", total=100)

    def __call__(self, task: Task) -> None:
        self._progress.update(
            self._id,
            completed=task.progress,
            description=f"{self._prefix}task {task.id} {task.status.value}",
        )


@main.command()
@click.argument("interface")
@click.argument("profile")
@click.option("--no-wait", is_flag=True, help="Return once the API accepted the change.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds to wait.")
@click.pass_context
def update(
    ctx: click.Context, interface: str, profile: str, no_wait: bool, timeout: float | None
) -> None:
    """Assign speed PROFILE (an id nsp_... or a permalink such as 1gbps) to INTERFACE."""
    settings = _settings(ctx)
    code = _run(settings, lambda: _update(settings, interface, profile, not no_wait, timeout))
    ctx.exit(code)


async def _update(
    settings: _Settings, interface: str, profile: str, wait: bool, timeout: float | None
) -> int:
    out = settings.out
    async with settings.client() as client:
        try:
            if not wait:
                task = await client.update_speed_profile(interface, profile)
                out.print(f"submitted: task {task.id} is {task.status.value}")
                return 0
            with _task_progress(out) as progress:
                bar = _TaskBar(progress, interface)
                task = await client.update_speed_profile(
                    interface, profile, wait=True, on_progress=bar, timeout=timeout
                )
                bar(task)
        except SpeedProfileAlreadyAssignedError:
            out.print(f"{interface} already has speed profile {profile}: nothing to do")
            return 0
    out.print(f"completed: {interface} now has speed profile {profile} (task {task.id})")
    return 0


@main.command("task")
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Follow the task on a progress bar until it ends.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds to wait.")
@click.pass_context
def task_command(ctx: click.Context, task_id: str, wait: bool, timeout: float | None) -> None:
    """Show a task: status, progress and times (exit 1 if it failed)."""
    settings = _settings(ctx)
    ctx.exit(_run(settings, lambda: _show_task(settings, task_id, wait, timeout)))


async def _show_task(settings: _Settings, task_id: str, wait: bool, timeout: float | None) -> int:
    validate_identifier(task_id, what="task id")
    out = settings.out
    async with settings.client() as client:
        task = await client.get_task(task_id)
        if wait and not task.status.is_terminal:
            with _task_progress(out) as progress:
                bar = _TaskBar(progress)
                bar(task)
                try:
                    task = await client.wait_for_task(task, on_progress=bar, timeout=timeout)
                except TaskFailedError as exc:
                    task = exc.task
                bar(task)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("id", task.id)
    table.add_row("name", task.name or "-")
    table.add_row("status", task.status.value)
    table.add_row("progress", f"{task.progress}%")
    for label, value in (
        ("created", task.created_at),
        ("started", task.started_at),
        ("finished", task.finished_at),
    ):
        table.add_row(label, value.isoformat() if value is not None else "-")
    out.print(table)
    return EXIT_FAILURE if task.status is TaskStatus.FAILED else 0


# --- profiles / interfaces -----------------------------------------------------------------


@main.command()
@click.option(
    "--organization",
    "-o",
    required=True,
    help="Organization id (org_...) or sub-domain.",
)
@click.pass_context
def profiles(ctx: click.Context, organization: str) -> None:
    """List the network speed profiles an organization can use."""
    settings = _settings(ctx)
    ctx.exit(_run(settings, lambda: _profiles(settings, organization)))


def _org_lookup(organization: str) -> tuple[str | None, str | None]:
    """``(organization_id, sub_domain)``: an ``org_...`` value is an id, anything else a sub-domain."""
    validate_identifier(organization, what="organization")
    if organization.startswith("org_"):
        return organization, None
    return None, organization


def _speed(mbit: int | None) -> str:
    if mbit is None:
        return "unlimited"
    return f"{mbit / 1000:g} Gbit/s" if mbit >= 1000 else f"{mbit} Mbit/s"


async def _profiles(settings: _Settings, organization: str) -> int:
    org_id, sub_domain = _org_lookup(organization)
    async with settings.client() as client:
        items = await client.list_speed_profiles(organization_id=org_id, sub_domain=sub_domain)
    table = Table(title=f"Network speed profiles of {organization}")
    for column in ("id", "name", "permalink", "upload", "download"):
        table.add_column(column, no_wrap=column in ("id", "permalink"))
    for p in items:
        table.add_row(
            p.id,
            p.name or "-",
            p.permalink or "-",
            _speed(p.upload_speed_in_mbit),
            _speed(p.download_speed_in_mbit),
        )
    settings.out.print(table)
    return 0


@main.command()
@click.option("--vm", required=True, help="Virtual machine id (vm_...) or FQDN.")
@click.pass_context
def interfaces(ctx: click.Context, vm: str) -> None:
    """List the network interfaces of a virtual machine with their speed profiles."""
    settings = _settings(ctx)
    ctx.exit(_run(settings, lambda: _interfaces(settings, vm)))


async def _ready(value: T) -> T:
    return value


async def _interfaces(settings: _Settings, vm: str) -> int:
    validate_identifier(vm, what="vm")
    is_id = vm.startswith("vm_")
    async with settings.client() as client:
        items = await client.list_network_interfaces(
            virtual_machine_id=vm if is_id else None, fqdn=None if is_id else vm
        )
        # The list endpoint leaves the speed profile out; a VM has few interfaces, so fetch each.
        items = list(
            await asyncio.gather(
                *(
                    client.get_network_interface(iface.id)
                    if iface.speed_profile is None
                    else _ready(iface)
                    for iface in items
                )
            )
        )
    table = Table(title=f"Network interfaces of {vm}")
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("speed profile")
    for iface in items:
        profile = iface.speed_profile
        shown = "-" if profile is None else (profile.permalink or profile.name or profile.id)
        table.add_row(iface.id, iface.name or "-", shown)
    settings.out.print(table)
    return 0


# --- bulk input ----------------------------------------------------------------------------------

INPUT_COLUMNS = ("interface", "speed_profile")
"""The CSV header (and JSON Lines keys) of a bulk input file."""


@attrs.frozen
class _Row:
    """One item of bulk input: a good one, or a bad one with ``problem`` set."""

    line: int
    interface: str
    speed_profile: str
    problem: str | None = None

    @property
    def message(self) -> str:
        """The problem, naming the line: ``"line 7: interface is empty"``."""
        return f"line {self.line}: {self.problem}"


def _check_row(line: int, interface: object, speed_profile: object) -> _Row:
    """Validate one row's values; a bad value gives a row with ``problem`` set."""
    values: dict[str, str] = {}
    problem: str | None = None
    for name, value in zip(INPUT_COLUMNS, (interface, speed_profile), strict=True):
        if value is None:
            problem = problem or f"{name} is missing"
            values[name] = ""
            continue
        if not isinstance(value, str):
            problem = problem or f"{name} must be a string, not {type(value).__name__}"
            values[name] = json.dumps(value)
            continue
        value = value.strip()
        values[name] = value
        if problem is None:
            if not value:
                problem = f"{name} is empty"
                continue
            try:
                validate_identifier(value, what=name)
                if name == "speed_profile":
                    SpeedProfileRef.parse(value)
            except ValueError as exc:
                problem = str(exc)
    return _Row(line, values["interface"], values["speed_profile"], problem)


def _detect_format(name: str, first_line: str | None) -> str:
    """``"csv"`` or ``"jsonl"``: by extension, else by a first non-blank character ``{``."""
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    return "jsonl" if first_line is not None and first_line.lstrip().startswith("{") else "csv"


class _BulkInput:
    """A bulk input file (or stdin), read lazily one row at a time.

    The file is read as bytes and decoded line by line, so one undecodable line becomes one bad
    row rather than the end of the run. The header of a CSV file is read and checked when the file
    is opened, so that a file with the wrong columns fails before anything is sent.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.is_stdin = source == "-"
        # click.open_file maps "-" to binary stdin and never closes a standard stream
        self._stream: IO[bytes] = click.open_file(source, "rb")
        try:
            self._lines = self._decoded()
            peeked: list[str] = []
            first: str | None = None
            for line in self._lines:
                peeked.append(line)
                if line.strip():
                    first = line
                    break
            self.format = _detect_format(source, first)
            self._peeked: Iterator[str] = itertools.chain(peeked, self._lines)
            self._csv: Any = None
            self._columns = (0, 1)
            if self.format == "csv" and first is not None:
                self._read_header()
        except BaseException:
            self.close()
            raise

    def _decoded(self) -> Iterator[str]:
        # surrogateescape keeps undecodable bytes as lone surrogates, which the id check rejects.
        for number, raw in enumerate(self._stream):
            line = raw.decode("utf-8", "surrogateescape")
            yield line.removeprefix("\ufeff") if number == 0 else line

    def _read_header(self) -> None:
        self._csv = csv.reader(self._peeked)
        header = next(self._csv, None) or []
        names = [name.strip().lower() for name in header]
        missing = [column for column in INPUT_COLUMNS if column not in names]
        if missing:
            shown = ",".join(header) if all(h.isprintable() for h in header) else repr(header)
            raise click.UsageError(
                f"{self.source}: the CSV header must name the columns "
                f"{','.join(INPUT_COLUMNS)} (missing {', '.join(missing)}; got {shown or 'nothing'})"
            )
        self._columns = (names.index(INPUT_COLUMNS[0]), names.index(INPUT_COLUMNS[1]))

    def close(self) -> None:
        """Close the file (never stdin)."""
        self._stream.close()

    def count(self) -> int | None:
        """The number of items, counted cheaply, when the input is a regular file; else None.

        Counts non-blank lines (minus the CSV header) without parsing them, so a quoted CSV value
        that spans lines makes it overcount: it only sizes the progress bar.
        """
        if self.is_stdin or not Path(self.source).is_file():
            return None
        with open(self.source, "rb") as f:
            lines = sum(1 for line in f if line.strip())
        return max(0, lines - 1) if self.format == "csv" else lines

    def rows(self) -> Iterator[_Row]:
        """Every item in order, good and bad, with its line number; lazily."""
        if self.format == "jsonl":
            return self._jsonl_rows()
        return self._csv_rows()

    def _csv_rows(self) -> Iterator[_Row]:
        if self._csv is None:  # an empty file
            return
        first, second = self._columns
        for record in self._csv:
            if not record or all(not cell.strip() for cell in record):
                continue
            line = self._csv.line_num
            if len(record) <= max(first, second):
                name = INPUT_COLUMNS[0] if len(record) <= first else INPUT_COLUMNS[1]
                yield _Row(line, "", "", f"missing column {name}")
                continue
            yield _check_row(line, record[first], record[second])

    def _jsonl_rows(self) -> Iterator[_Row]:
        for line, text in enumerate(self._peeked, 1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except ValueError as exc:
                yield _Row(line, "", "", f"invalid JSON: {exc}")
                continue
            if not isinstance(data, dict):
                yield _Row(line, "", "", f"expected a JSON object, got {type(data).__name__}")
                continue
            yield _check_row(line, data.get(INPUT_COLUMNS[0]), data.get(INPUT_COLUMNS[1]))


# --- bulk: state, display, summary -------------------------------------------------------------

_OUTCOME_LABELS = {
    Outcome.COMPLETED: "completed",
    Outcome.ALREADY_ASSIGNED: "already assigned",
    Outcome.FAILED: "failed",
    Outcome.ERROR: "error",
    Outcome.SUBMITTED: "submitted",
}
_OUTCOME_STYLES = {
    Outcome.COMPLETED: "green",
    Outcome.ALREADY_ASSIGNED: "cyan",
    Outcome.FAILED: "red",
    Outcome.ERROR: "red",
    Outcome.SUBMITTED: "yellow",
}


@attrs.define
class _RequestCounter:
    """Counts the HTTP requests a client session sends, and the 429 answers (aiohttp tracing)."""

    requests: int = 0
    rate_limited: int = 0

    def session(self) -> aiohttp.ClientSession:
        """A session for the client (same connection limit as its own) that counts into this."""
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._on_start)
        trace.on_request_end.append(self._on_end)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512), trace_configs=[trace]
        )

    async def _on_start(self, *_: object) -> None:
        self.requests += 1

    async def _on_end(
        self, _session: object, _ctx: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if params.response.status == 429:
            self.rate_limited += 1


@attrs.define
class _BulkState:
    """Everything a bulk run has seen: counts, failures, the latest engine snapshot.

    Only counters and the first :data:`MAX_FAILURES_SHOWN` failures are kept, so memory stays flat
    however long the input is.
    """

    total: int | None
    wait: bool
    # Every key present from the start: the display thread iterates it while results come in.
    counts: dict[Outcome, int] = attrs.field(factory=lambda: dict.fromkeys(Outcome, 0))
    failures: list[str] = attrs.field(factory=list)
    failure_count: int = 0
    resumed: int = 0
    progress: BulkProgress | None = None
    requests: _RequestCounter = attrs.field(factory=_RequestCounter)
    started: float = attrs.field(factory=time.monotonic)
    finished: float | None = None

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def any_failed(self) -> bool:
        return bool(self.counts[Outcome.FAILED] or self.counts[Outcome.ERROR])

    def add(self, outcome: Outcome, failure: str | None = None, resumed: bool = False) -> None:
        self.counts[outcome] += 1
        self.resumed += resumed
        if failure is not None:
            self.failure_count += 1
            if len(self.failures) < MAX_FAILURES_SHOWN:
                self.failures.append(failure)

    def eta(self) -> float | None:
        """Seconds left, from the rate of items done in this run (journal skips excluded)."""
        if self.total is None:
            return None
        remaining = self.total - self.done
        if remaining <= 0:
            return 0.0
        worked = self.done - self.resumed
        return remaining * self.elapsed / worked if worked > 0 else None


class _BulkView:
    """The live display of a bulk run: one bar, then a line of counts and request pacing.

    Rendering reads the state; the engine's callback only stores its snapshot, so a busy run
    costs one render per refresh, not one per item.
    """

    def __init__(self, state: _BulkState) -> None:
        self._state = state
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]bulk update"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
        )
        self._bar = self._progress.add_task("bulk", total=state.total)

    def on_progress(self, progress: BulkProgress) -> None:
        self._state.progress = progress

    def __rich__(self) -> RenderableType:
        state = self._state
        self._progress.update(self._bar, completed=state.done, total=state.total)
        return Group(self._progress, _stats_line(state))


def _stats_line(state: _BulkState) -> Text:
    text = Text()
    for outcome in Outcome:
        count = state.counts[outcome]
        if count or outcome is not Outcome.SUBMITTED or not state.wait:
            text.append(f"{_OUTCOME_LABELS[outcome]} ", style="dim")
            text.append(str(count), style=_OUTCOME_STYLES[outcome] if count else "")
            text.append("  ")
    snapshot = state.progress
    if snapshot is not None:
        text.append("in flight ", style="dim").append(str(snapshot.in_flight)).append("  ")
        rate = snapshot.requests_per_second
        text.append("req/s ", style="dim").append(f"{rate:.1f}" if rate is not None else "-")
        text.append("  limit ", style="dim").append(
            str(snapshot.limit) if snapshot.limit is not None else "-"
        )
        text.append("  ")
    text.append("429s ", style="dim").append(str(state.requests.rate_limited))
    text.append("  ETA ", style="dim").append(_duration(state.eta()))
    return text


def _summary_table(state: _BulkState, title: str) -> Table:
    table = Table(title=title, show_header=True, title_justify="left")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for outcome in Outcome:
        if outcome is Outcome.SUBMITTED and state.wait and not state.counts[outcome]:
            continue
        count = state.counts[outcome]
        table.add_row(
            Text(_OUTCOME_LABELS[outcome], style=_OUTCOME_STYLES[outcome] if count else ""),
            str(count),
        )
    table.add_section()
    table.add_row("total", str(state.done))
    if state.resumed:
        table.add_row("done per journal (not sent)", str(state.resumed))
    table.add_row("wall time", _duration(state.elapsed))
    table.add_row("requests", str(state.requests.requests))
    table.add_row("429 responses", str(state.requests.rate_limited))
    return table


def _print_summary(console: Console, state: _BulkState, *, interrupted: bool = False) -> None:
    title = "Bulk update summary" + (" (interrupted: partial)" if interrupted else "")
    console.print(_summary_table(state, title))
    if state.failure_count:
        console.print(f"[bold red]Failures[/] ({state.failure_count}):")
        for failure in state.failures:
            console.print(f"  {failure}", markup=False, highlight=False, soft_wrap=True)
        more = state.failure_count - len(state.failures)
        if more > 0:
            console.print(f"  … and {more} more")


# --- bulk: running -------------------------------------------------------------------------------


class _ResultsWriter:
    """Writes one JSON line per result to ``--output`` (if given), flushed as results come."""

    def __init__(self, path: Path | None, settings: _Settings) -> None:
        self._settings = settings
        self._file: IO[str] | None = (
            open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
            if path is not None
            else None
        )

    def write(
        self,
        *,
        line: int | None,
        interface_id: str,
        speed_profile: str,
        outcome: Outcome,
        task_id: str | None,
        error: str | None,
    ) -> None:
        if self._file is None:
            return
        record = {
            "line": line,
            "interface_id": interface_id,
            "speed_profile": speed_profile,
            "outcome": outcome.value,
            "task_id": task_id,
            "error": self._settings.redact(error) if error is not None else None,
        }
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@attrs.frozen
class _BulkOptions:
    concurrency: int
    rate_limit: int | None
    window: float
    journal: Path | None
    wait: bool
    timeout: float | None


def _failure_text(line: int | None, interface_id: str, profile: str, message: str) -> str:
    where = f"line {line}: " if line is not None else ""
    return f"{where}{interface_id or '?'} → {profile or '?'}: {message}"


def _result_message(result: UpdateResult, lines: array.array[int]) -> str | None:
    """The error of a result in the user's terms (line numbers rather than input positions)."""
    error = result.error
    if error is None:
        return None
    if isinstance(error, DuplicateItemError) and 0 <= error.first_index < len(lines):
        return (
            f"interface {error.interface_id} duplicates line {lines[error.first_index]} "
            "(each interface is updated at most once per run)"
        )
    return _describe(error)


async def _run_bulk(
    settings: _Settings,
    client: KatapultClient,
    rows: Iterable[_Row],
    options: _BulkOptions,
    state: _BulkState,
    writer: _ResultsWriter,
) -> None:
    """Feed the good rows to the bulk engine behind the live display; record every result."""
    # Engine input position -> line number; 8 bytes an item, the one thing kept per item.
    lines: array.array[int] = array.array("q")

    def record_bad(row: _Row) -> None:
        state.add(Outcome.ERROR, settings.redact(row.message))
        writer.write(
            line=row.line,
            interface_id=row.interface,
            speed_profile=row.speed_profile,
            outcome=Outcome.ERROR,
            task_id=None,
            error=row.message,
        )

    def items() -> Iterator[tuple[str, str]]:
        for row in rows:
            if row.problem is not None:
                record_bad(row)
                continue
            lines.append(row.line)
            yield row.interface, row.speed_profile

    view = _BulkView(state)
    results = client.bulk_update_speed_profiles(
        items(),
        concurrency=options.concurrency,
        wait=options.wait,
        on_progress=view.on_progress,
        journal=options.journal,
        timeout=options.timeout,
        total=state.total,
    )

    def record(result: UpdateResult) -> None:
        line = lines[result.index] if 0 <= result.index < len(lines) else None
        message = _result_message(result, lines)
        failure = None
        if result.outcome in (Outcome.FAILED, Outcome.ERROR):
            failure = settings.redact(
                _failure_text(line, result.interface_id, result.speed_profile, message or "")
            )
        state.add(result.outcome, failure, resumed=result.resumed)
        writer.write(
            line=line,
            interface_id=result.interface_id,
            speed_profile=result.speed_profile,
            outcome=result.outcome,
            task_id=result.task.id if result.task is not None else None,
            error=message,
        )

    try:
        with Live(view, console=settings.out, refresh_per_second=REFRESH_PER_SECOND):
            # Closing stops the engine at once (also on Ctrl-C): no new PATCH, journal closed.
            async with contextlib.aclosing(results):
                async for result in results:
                    record(result)
    finally:
        state.finished = time.monotonic()
        if not settings.out.is_terminal:
            settings.out.line()  # rich ends its one final render without a newline


async def _bulk(
    settings: _Settings,
    rows: Iterable[_Row],
    options: _BulkOptions,
    state: _BulkState,
    writer: _ResultsWriter,
) -> int:
    session = state.requests.session()
    try:
        client = settings.client(
            rate_limit=options.rate_limit, rate_limit_window=options.window, session=session
        )
        async with client:
            await _run_bulk(settings, client, rows, options, state, writer)
    finally:
        await session.close()
    _print_summary(settings.out, state)
    return EXIT_FAILURE if state.any_failed else 0


async def _dry_run(
    settings: _Settings, rows: Iterable[_Row], organization: str | None, state: _BulkState
) -> int:
    """Check every row (and, given an organization, every profile) without sending a PATCH."""
    known: set[str] | None = None
    if organization is not None:
        org_id, sub_domain = _org_lookup(organization)
        async with settings.client() as client:
            profiles = await client.list_speed_profiles(
                organization_id=org_id, sub_domain=sub_domain
            )
        known = {p.id for p in profiles} | {p.permalink for p in profiles if p.permalink}
    first_line: dict[str, int] = {}
    for row in rows:
        problem = row.problem
        if problem is None and known is not None and row.speed_profile not in known:
            problem = f"unknown speed profile {row.speed_profile!r} in {organization}"
        if problem is None:
            first = first_line.setdefault(row.interface, row.line)
            if first != row.line:
                problem = f"interface {row.interface} duplicates line {first}"
        if problem is not None:
            state.add(Outcome.ERROR, settings.redact(f"line {row.line}: {problem}"))
        else:
            state.add(Outcome.SUBMITTED)
    state.finished = time.monotonic()
    valid, invalid = state.counts[Outcome.SUBMITTED], state.counts[Outcome.ERROR]
    checked = " (speed profiles checked)" if known is not None else ""
    settings.out.print(
        f"dry run: {valid + invalid} items, {valid} valid, {invalid} invalid{checked}; "
        "nothing was sent"
    )
    for failure in state.failures:
        settings.out.print(f"  {failure}", markup=False, highlight=False, soft_wrap=True)
    more = state.failure_count - len(state.failures)
    if more > 0:
        settings.out.print(f"  … and {more} more")
    return EXIT_FAILURE if invalid else 0


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Items in progress at once (the rate limiter paces the requests themselves).",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    help="Requests permitted per window, if known (else learnt from the API's headers).",
)
@click.option(
    "--window",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Rate-limit window in seconds.",
)
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Journal to resume from and append to [default: FILE.journal.jsonl; none for stdin].",
)
@click.option("--no-wait", is_flag=True, help="Do not wait for the tasks: stop at submitted.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one JSON line per item: line, interface_id, speed_profile, outcome, task_id, error.",
)
@click.option("--dry-run", is_flag=True, help="Only validate the input; send no update.")
@click.option(
    "--organization",
    help="With --dry-run: check the speed profiles against this organization (org_... or "
    "sub-domain).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for each task before it counts as an error.",
)
@click.pass_context
def bulk(
    ctx: click.Context,
    file: str,
    concurrency: int,
    rate_limit: int | None,
    window: float,
    journal: Path | None,
    no_wait: bool,
    output: Path | None,
    dry_run: bool,
    organization: str | None,
    timeout: float | None,
) -> None:
    """Update many interfaces from FILE (CSV or JSON Lines; - for stdin).

    A CSV file has the header `interface,speed_profile`; a JSON Lines file has one object
    `{"interface": ..., "speed_profile": ...}` a line. Bad rows are reported with their line
    number and the run goes on. The run is journaled: after Ctrl-C (or a crash) the same command
    resumes without updating the interfaces already done. Exit status 1 if any item failed.
    """
    settings = _settings(ctx)
    if organization is not None and not dry_run:
        raise click.UsageError("--organization is only used with --dry-run")
    try:
        source = _BulkInput(file)
    except OSError as exc:
        raise CommandError(settings.redact(_describe(exc))) from None
    with contextlib.closing(source):
        state = _BulkState(total=source.count(), wait=not no_wait)
        if dry_run:
            ctx.exit(_run(settings, lambda: _dry_run(settings, source.rows(), organization, state)))
        if journal is None and not source.is_stdin:
            journal = Path(f"{file}.journal.jsonl")
        options = _BulkOptions(
            concurrency=concurrency,
            rate_limit=rate_limit,
            window=window,
            journal=journal,
            wait=not no_wait,
            timeout=timeout,
        )
        writer = _ResultsWriter(output, settings)
        with contextlib.closing(writer):

            def interrupted() -> None:
                _print_summary(settings.out, state, interrupted=True)
                hint = "interrupted: resume with the same command"
                if options.journal is None:
                    hint = "interrupted (no journal: a rerun sends every item again)"
                settings.out.print(f"[bold yellow]{hint}[/]")

            code = _run(
                settings,
                lambda: _bulk(settings, source.rows(), options, state, writer),
                on_interrupt=interrupted,
            )
    ctx.exit(code)


# --- simulate / demo -----------------------------------------------------------------------------

DEMO_TARGET_PROFILE = "1gbps"
"""The profile ``demo`` and ``simulate --interfaces-file`` move interfaces to (from 10gbps)."""


def _simulator_config(**options: Any) -> SimulatorConfig:
    # The simulator (aiohttp's server side) is imported only by the commands that run it.
    from katapult_async.testing import SimulatorConfig

    try:
        return SimulatorConfig(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to use.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port (0: any free one).")
@click.option("--rate-limit", type=click.IntRange(min=1), help="Requests per window per token.")
@click.option(
    "--window", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True
)
@click.option(
    "--mode",
    type=click.Choice(["fixed", "sliding"]),
    default="fixed",
    show_default=True,
    help="Rate-limit windows: aligned fixed windows (as Katapult) or a sliding one.",
)
@click.option("--interfaces", type=click.IntRange(min=0), default=0, help="Interfaces to create.")
@click.option(
    "--task-duration", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Seconds."
)
@click.option(
    "--failure-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of tasks that fail."
)
@click.option("--seed", type=int, help="Seed for every random choice (and the token).")
@click.option(
    "--interfaces-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Write the created interfaces as a bulk CSV (target profile {DEMO_TARGET_PROFILE}).",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    host: str,
    port: int,
    rate_limit: int | None,
    window: float,
    mode: str,
    interfaces: int,
    task_duration: float,
    failure_rate: float,
    seed: int | None,
    interfaces_file: Path | None,
) -> None:
    """Run the Katapult API simulator on loopback until Ctrl-C.

    Prints its base URL and a token for it (a fake local one), e.g. to try `bulk` safely.
    """
    settings = _settings(ctx)
    config = _simulator_config(
        host=host,
        port=port,
        rate_limit=rate_limit,
        rate_limit_window=window,
        rate_limit_mode=mode,
        task_duration=task_duration,
        task_failure_rate=failure_rate,
        seed=seed,
    )

    def ready(simulator: KatapultSimulator) -> None:
        ids = simulator.add_interfaces(interfaces) if interfaces else []
        limit = f"{rate_limit} requests / {window:g}s ({mode})" if rate_limit else "none"
        for label, value in (
            ("base_url", simulator.base_url),
            ("token", simulator.token),
            ("admin_url", simulator.admin_url),
            ("rate_limit", limit),
            ("interfaces", f"{len(ids)} on {simulator.default_virtual_machine.id}"),
        ):
            click.echo(f"{label + ':':<12}{value}")
        if interfaces_file is not None:
            with open(interfaces_file, "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(INPUT_COLUMNS)
                writer.writerows((iface, DEMO_TARGET_PROFILE) for iface in ids)
            click.echo(f"{'wrote:':<12}{interfaces_file}")
            window_option = f" --window {window:g}" if window != 60 else ""
            click.echo(
                f"try:        KATAPULT_API_TOKEN=<token> katapult-async --base-url "
                f"{simulator.base_url} bulk {interfaces_file}{window_option}"
            )
        click.echo("serving until Ctrl-C")
        sys.stdout.flush()

    from katapult_async.testing import serve

    try:
        asyncio.run(serve(config, on_ready=ready))
    except KeyboardInterrupt:  # where serve could not install its signal handlers
        pass
    except OSError as exc:
        raise CommandError(settings.redact(_describe(exc))) from None


@main.command()
@click.option("--count", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="The simulator's limit per window (the client learns it from the response headers).",
)
@click.option(
    "--window", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True
)
@click.option("--concurrency", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--task-duration", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Seconds."
)
@click.pass_context
def demo(
    ctx: click.Context,
    count: int,
    rate_limit: int,
    window: float,
    concurrency: int,
    task_duration: float,
) -> None:
    """Bulk-update COUNT interfaces on a built-in simulator, paced to its rate limit.

    No token or network needed. Each item costs at least two requests (the PATCH and one poll of
    its task), so the run cannot beat 2 x COUNT / (RATE_LIMIT / WINDOW) seconds; the summary says
    how close it came.
    """
    settings = _settings(ctx)
    state = _BulkState(total=count, wait=True)
    options = _BulkOptions(
        concurrency=concurrency,
        rate_limit=None,
        window=window,
        journal=None,
        wait=True,
        timeout=None,
    )
    config = _simulator_config(
        rate_limit=rate_limit,
        rate_limit_window=window,
        task_duration=task_duration,
        task_duration_jitter=0.2,
        seed=0,
    )

    def interrupted() -> None:
        _print_summary(settings.out, state, interrupted=True)

    ctx.exit(
        _run(
            settings,
            lambda: _demo(settings, config, count, options, state),
            on_interrupt=interrupted,
        )
    )


async def _demo(
    settings: _Settings,
    config: SimulatorConfig,
    count: int,
    options: _BulkOptions,
    state: _BulkState,
) -> int:
    from katapult_async.testing import KatapultSimulator

    out = settings.out
    limit, window = config.rate_limit, config.rate_limit_window
    assert limit is not None
    async with KatapultSimulator.from_config(config) as simulator:
        ids = simulator.add_interfaces(count, speed_profile="10gbps")
        out.print(
            f"Simulator at {simulator.base_url}: rate limit {limit} requests per {window:g}s, "
            f"tasks take ~{config.task_duration:g}s.\n"
            f"Updating {count} interfaces from 10gbps to {DEMO_TARGET_PROFILE} with concurrency "
            f"{options.concurrency}; the client is not told the limit and learns it from the "
            "response headers.",
            highlight=False,
        )
        rows = (_Row(n, iface, DEMO_TARGET_PROFILE) for n, iface in enumerate(ids, 1))
        session = state.requests.session()
        writer = _ResultsWriter(None, settings)
        try:
            # The window is the API's (60 s on Katapult), so it is given; the limit is learnt.
            async with KatapultClient(
                simulator.token,
                base_url=simulator.base_url,
                rate_limit_window=window,
                session=session,
            ) as client:
                await _run_bulk(settings, client, rows, options, state, writer)
        finally:
            await session.close()
        target = simulator.profile_by_permalink(DEMO_TARGET_PROFILE).id
        interfaces = simulator.interfaces
        moved = sum(1 for iface in ids if interfaces[iface].speed_profile_id == target)
    _print_summary(out, state)
    bound = 2 * count / (limit / window)
    elapsed = state.elapsed
    out.print(
        f"Wall time {_duration(elapsed)} against a physical bound of {_duration(bound)} "
        f"(2 requests x {count} items at {limit / window:g} requests/s): "
        f"{elapsed / bound:.2f}x the bound; 429 responses: {state.requests.rate_limited}. "
        f"{moved}/{count} interfaces now have {DEMO_TARGET_PROFILE}.",
        highlight=False,
    )
    return EXIT_FAILURE if state.any_failed or moved != count else 0
