"""The rollout options of ``bulk``: ``--canary``, ``--max-failures``, ``--min-sample``,
``--verify``, ``--on-halt`` and ``--yes``, turned into one :class:`~katapult_async.Rollout`; the
canary prompt; and what follows a halt (``--on-halt revert``: the library's revert of what the
run changed, shown as ``undo`` shows it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click
from rich.table import Table

from katapult_async._revert import revert_journal_path
from katapult_async._rollout import CanaryReport, Rollout
from katapult_async.cli._app import EXIT_HALTED, Settings
from katapult_async.cli._view import BulkState, BulkView
from katapult_async.errors import RolloutHaltedError
from katapult_async.models import Outcome

FC = TypeVar("FC", bound=Callable[..., Any])

ON_HALT = ("stop", "revert")
"""What ``--on-halt`` may say: stop (the default: a rerun with the same journal resumes), or
revert every interface the run changed."""


def _max_failures(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[int | None, float | None]:
    """``--max-failures N`` (a count) or ``P%`` (a share of the finished items)."""
    if value is None:
        return None, None
    text = value.strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 <= percent <= 100:
                raise ValueError
            return None, percent / 100
        count = int(text)
        if count < 0:
            raise ValueError
        return count, None
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give a number of failures (5) or a percentage (10%)"
        ) from None


def rollout_options(command: FC) -> FC:
    """The rollout options of a command (the command gets ``rollout_flags``)."""
    options = [
        click.option(
            "--canary",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Send these first items alone; go on only if each succeeds (and, on a terminal, "
            "you say so: see --yes).",
        ),
        click.option(
            "--max-failures",
            metavar="N|P%",
            callback=_max_failures,
            help="Halt when more than N items fail, or more than P% of those finished (from "
            "--min-sample on). Strict: the run ends with at most N+1 failures.",
        ),
        click.option(
            "--min-sample",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Finished items before a P% --max-failures applies.",
        ),
        click.option(
            "--verify",
            type=click.FloatRange(0, 1),
            is_flag=False,
            flag_value=1.0,
            default=0.0,
            metavar="[FRACTION]",
            help="Read back the interfaces completed (one request each): all of them, or this "
            "share (0.1: every tenth). Another profile than the target is an error. Alone, give "
            "it after FILE (or --verify=1), so that FILE is not taken for its FRACTION.",
        ),
        click.option(
            "--on-halt",
            type=click.Choice(ON_HALT),
            default="stop",
            show_default=True,
            help="After a halt: stop (rerun to resume), or revert every interface the run "
            "changed (needs previous profiles: a PLAN, or --record-previous).",
        ),
        click.option(
            "--yes",
            is_flag=True,
            help="Do not ask after the canary: go on when it passed.",
        ),
    ]
    for decorator in reversed(options):
        command = decorator(command)
    return command


@attrs.frozen
class RolloutFlags:
    """The rollout options as the command line gave them."""

    canary: int = 0
    max_failures: tuple[int | None, float | None] = (None, None)
    min_sample: int = 10
    verify: float = 0.0
    on_halt: str = "stop"
    yes: bool = False

    @property
    def wanted(self) -> bool:
        """Whether any rollout option was given (else the run is a plain bulk run)."""
        return bool(self.canary or self.max_failures != (None, None) or self.verify or self.revert)

    @property
    def revert(self) -> bool:
        return self.on_halt == "revert"

    def check(self, *, journal: Path | None, previous_known: bool, wait: bool = True) -> None:
        """Refuse what cannot work, before anything is sent.

        Raises:
            click.UsageError: a rollout with ``--no-wait``; ``--on-halt revert`` without a
                journal or previous profiles.
        """
        if self.wanted and not wait:
            raise click.UsageError(
                "a rollout waits for its tasks (--canary, --max-failures, --verify, --on-halt "
                "go by how they end): drop --no-wait"
            )
        if not self.revert:
            return
        if journal is None:
            raise click.UsageError("--on-halt revert needs a journal (--journal PATH)")
        if not previous_known:
            raise click.UsageError(
                "--on-halt revert needs the previous profiles: apply a PLAN, or add "
                "--record-previous"
            )

    def rollout(self, settings: Settings, view: BulkView) -> Rollout | None:
        """The :class:`Rollout` to pass to the engine (``None`` when no option asks for one)."""
        if not self.wanted:
            return None
        count, rate = self.max_failures
        return Rollout(
            canary=self.canary,
            on_canary=canary_prompt(settings, view, yes=self.yes) if self.canary else None,
            max_failures=count,
            max_failure_rate=rate,
            min_sample=self.min_sample,
            verify=self.verify,
        )


def rollout_halt(state: BulkState) -> RolloutHaltedError | None:
    """The rollout's halt, if the run halted at its canary or its threshold."""
    halted = state.progress.halted if state.progress is not None else None
    return halted if isinstance(halted, RolloutHaltedError) else None


def halted_exit(settings: Settings, state: BulkState) -> int | None:
    """After a rollout halted: say why, how many were not started and what to do; return
    :data:`~katapult_async.cli._app.EXIT_HALTED`. ``None`` when the run did not halt so."""
    halted = rollout_halt(state)
    if halted is None and state.reverted is None:
        return None
    why = settings.redact(halted.reason) if halted is not None else "in an earlier run"
    skipped = state.counts[Outcome.SKIPPED]
    if state.reverted is None:
        then = "rerun the same command to resume (the skipped items are sent then)"
    else:
        then = f"{state.reverted} reverted (--on-halt revert); a rerun starts a new run"
    settings.out.print(
        f"halted: {why}\n{skipped} not started; {then}",
        style="bold red",
        markup=False,
        highlight=False,
    )
    return EXIT_HALTED


def revert_journal(journal: Path) -> Path:
    """The journal of the revert that ``--on-halt revert`` runs (as ``undo`` would)."""
    return Path(revert_journal_path(journal))


def canary_prompt(
    settings: Settings, view: BulkView, *, yes: bool
) -> Callable[[CanaryReport], Any]:
    """The ``on_canary`` of the command: show the canary's results; on a terminal (unless
    ``--yes``) ask whether to go on, ``no`` by default; elsewhere go on (the canary passed)."""

    async def on_canary(report: CanaryReport) -> bool:
        out = settings.out
        table = Table(title=f"Canary: {len(report.results)} items passed", title_justify="left")
        table.add_column("interface", no_wrap=True)
        table.add_column("profile")
        table.add_column("outcome")
        table.add_column("verified")
        for result in report.results:
            table.add_row(
                result.interface_id,
                str(result.speed_profile or "?"),
                result.outcome.value,
                "yes" if result.verified else "-",
            )
        live = view.live
        if yes or not out.is_terminal:
            out.print(table)
            return True
        if live is not None:
            live.stop()
        try:
            out.print(table)
            return await _ask("Go on with the rest?")
        finally:
            if live is not None:
                live.start()

    return on_canary


async def _ask(question: str) -> bool:
    """``click.confirm`` (default no) in a daemon thread, so that the loop runs on and Ctrl-C
    is not held up by a read of stdin."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()

    def settle(value: bool) -> None:
        if not answer.done():
            answer.set_result(value)

    def read() -> None:
        try:
            value = click.confirm(question, default=False)
        except (click.Abort, EOFError):
            value = False
        loop.call_soon_threadsafe(settle, value)

    threading.Thread(target=read, name="canary-prompt", daemon=True).start()
    return await answer
