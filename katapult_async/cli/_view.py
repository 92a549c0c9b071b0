"""What a bulk run has seen and how it is shown: the live display, the stats line, the summary.

:class:`BulkView` renders a :class:`BulkState` on rich's refresh thread. The ETA it shows is the
one the engine puts in its latest :class:`~katapult_async.bulk.BulkProgress`, so the library and
the command agree on it.
"""

from __future__ import annotations

import math
import time

import attrs
from rich.console import Console, Group, RenderableType
from rich.live import Live
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

from katapult_async.bulk import BulkProgress
from katapult_async.models import Outcome

REFRESH_PER_SECOND = 4
"""Live display refreshes per second: smooth enough to read, cheap on a shared CPU."""

MAX_FAILURES_SHOWN = 20
"""Failures listed after a bulk run; the rest are counted ("and N more")."""

_OUTCOME_LABELS = {
    Outcome.COMPLETED: "completed",
    Outcome.ALREADY_ASSIGNED: "already assigned",
    Outcome.FAILED: "failed",
    Outcome.ERROR: "error",
    Outcome.SUBMITTED: "submitted",
    Outcome.SKIPPED: "skipped",
}
_OUTCOME_STYLES = {
    Outcome.COMPLETED: "green",
    Outcome.ALREADY_ASSIGNED: "cyan",
    Outcome.FAILED: "red",
    Outcome.ERROR: "red",
    Outcome.SUBMITTED: "yellow",
    Outcome.SKIPPED: "yellow",
}


def duration(seconds: float | None) -> str:
    """``"4.2s"`` under a minute, else ``"m:ss"`` or ``"h:mm:ss"``; ``"-"`` for unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@attrs.define
class RequestCounts:
    """The HTTP requests a bulk run's session sent, and the 429 answers among them."""

    requests: int = 0
    rate_limited: int = 0


@attrs.define
class BulkState:
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
    requests: RequestCounts = attrs.field(factory=RequestCounts)
    started: float = attrs.field(factory=time.monotonic)
    finished: float | None = None
    rollout: bool = False
    """A rollout: the summary shows ``skipped`` and ``verified`` even when 0."""
    verified: int = 0
    """Results read back and found right (a rollout's ``--verify``)."""
    reverted: int | None = None
    """After ``--on-halt revert``: the interfaces put back (``None``: no revert ran)."""

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


class BulkView:
    """The live display of a bulk run: one bar, then a line of counts and request pacing.

    Rendering reads the state; the engine's callback only stores its snapshot, so a busy run
    costs one render per refresh, not one per item.
    """

    def __init__(self, state: BulkState, *, window: float | None = None) -> None:
        self._state = state
        self._window = window
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]bulk update"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
        )
        self._bar = self._progress.add_task("bulk", total=state.total)
        self.live: Live | None = None
        """The live display while it runs (a prompt stops it and starts it again)."""

    def on_progress(self, progress: BulkProgress) -> None:
        self._state.progress = progress

    def __rich__(self) -> RenderableType:
        state = self._state
        self._progress.update(self._bar, completed=state.done, total=state.total)
        return Group(self._progress, _stats_line(state, self._window))


def _always_shown(outcome: Outcome, state: BulkState) -> bool:
    """Whether a zero count of ``outcome`` is shown (``submitted`` only without waiting;
    ``skipped`` never: only a halt or a revert skips)."""
    if outcome is Outcome.SUBMITTED:
        return not state.wait
    return outcome is not Outcome.SKIPPED or state.rollout


def _limit_text(limit: int | None, window: float | None) -> str:
    """``"100 / 2 s"``: the limit and the window it is per (``"-"`` while the limit is unknown)."""
    if limit is None:
        return "-"
    return f"{limit} / {window:g} s" if window is not None else str(limit)


def _stats_line(state: BulkState, window: float | None = None) -> Text:
    text = Text()
    for outcome in Outcome:
        count = state.counts[outcome]
        if count or _always_shown(outcome, state):
            text.append(f"{_OUTCOME_LABELS[outcome]} ", style="dim")
            text.append(str(count), style=_OUTCOME_STYLES[outcome] if count else "")
            text.append("  ")
    snapshot = state.progress
    if snapshot is not None:
        text.append("in flight ", style="dim").append(str(snapshot.in_flight)).append("  ")
        rate = snapshot.requests_per_second
        text.append("req/s ", style="dim").append(f"{rate:.1f}" if rate is not None else "-")
        text.append("  limit ", style="dim").append(_limit_text(snapshot.limit, window))
        if snapshot.windows_left:
            # the budget is what sets the pace: how many windows the rest needs, and the next
            text.append("  windows left ", style="dim").append(str(snapshot.windows_left))
            if snapshot.refills_in is not None:
                text.append(f" (next in {duration(snapshot.refills_in)})", style="dim")
        text.append("  ")
    text.append("429s ", style="dim").append(str(state.requests.rate_limited))
    eta = snapshot.eta if snapshot is not None else None
    if state.total is not None and state.done >= state.total:
        eta = 0.0  # bad input rows never reach the engine, so its own count stops short of total
    text.append("  ETA ", style="dim").append(duration(eta))
    return text


def _summary_table(state: BulkState, title: str) -> Table:
    table = Table(title=title, show_header=True, title_justify="left")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for outcome in Outcome:
        if not state.counts[outcome] and not _always_shown(outcome, state):
            continue
        count = state.counts[outcome]
        table.add_row(
            Text(_OUTCOME_LABELS[outcome], style=_OUTCOME_STYLES[outcome] if count else ""),
            str(count),
        )
    table.add_section()
    table.add_row("total", str(state.done))
    if state.rollout:
        table.add_row("verified (read back)", str(state.verified))
    if state.reverted is not None:
        table.add_row("reverted (--on-halt revert)", str(state.reverted))
    if state.resumed:
        table.add_row("already done (earlier run)", str(state.resumed))
    table.add_row("wall time", duration(state.elapsed))
    table.add_row("requests", str(state.requests.requests))
    table.add_row("429 responses", str(state.requests.rate_limited))
    return table


def print_failures(console: Console, state: BulkState) -> None:
    """The failures kept, one a line, then how many more there were."""
    for failure in state.failures:
        console.print(f"  {failure}", markup=False, highlight=False, soft_wrap=True)
    more = state.failure_count - len(state.failures)
    if more > 0:
        console.print(f"  … and {more} more")


def print_summary(console: Console, state: BulkState, *, interrupted: bool = False) -> None:
    """The summary table of a bulk run, then its failures."""
    title = "Bulk update summary" + (" (interrupted: partial)" if interrupted else "")
    console.print(_summary_table(state, title))
    if state.failure_count:
        console.print(f"[bold red]Failures[/] ({state.failure_count}):")
        print_failures(console, state)
