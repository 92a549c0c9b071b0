"""A bulk run's counters and the throttled ``on_progress`` calls that report them as
:class:`~katapult_async.models.BulkProgress` snapshots, with the budget's ETA (``budget_eta``, pure).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from katapult_async._callbacks import ProgressCallback, call_callback
from katapult_async.errors import RunHaltedError
from katapult_async.models import BulkProgress, Outcome, UpdateResult

if TYPE_CHECKING:
    from katapult_async.bulk._types import SupportsBulkUpdate

PROGRESS_INTERVAL = 0.1
"""Seconds between two ``on_progress`` calls at most (10 a second), plus one final call."""


class _Progress:
    """The counters of a run, and the throttled ``on_progress`` calls that report them.

    Attributes:
        finished: Items a worker has finished (their results queued or yielded).
        resumed: Results that came from the journal.
        free: Results that needed no request: resumed without one, or skipped by a halt (left
            out of the ETA's rate).
        halted: The run's halt, once it has halted.
    """

    def __init__(
        self,
        client: SupportsBulkUpdate,
        *,
        total: int | None,
        on_progress: ProgressCallback[BulkProgress] | None,
        wait: bool = True,
    ) -> None:
        self._client = client
        self._total = total
        self._wait = wait
        self._on_progress = on_progress
        self.finished = 0
        self.resumed = 0
        self.free = 0
        self.halted: RunHaltedError | None = None
        self._done = 0
        self._counts = dict.fromkeys(Outcome, 0)
        self._t0 = 0.0
        self._last_report: float | None = None

    def start(self) -> None:
        """Start the clock of ``elapsed`` and ``eta``."""
        self._t0 = time.monotonic()

    def count(self, result: UpdateResult) -> None:
        """Count a result handed to the caller."""
        self._done += 1
        self._counts[result.outcome] += 1

    async def report(self, *, started: int, final: bool) -> None:
        """Call ``on_progress``, unless one was made less than :data:`PROGRESS_INTERVAL` ago.

        Args:
            started: The pairs taken from the input so far.
            final: The run has ended: always call, even if every result was reported already.
        """
        if self._on_progress is None:
            return
        now = time.monotonic()
        if not final:
            if self._done == self._total:
                return  # the final call reports it
            last = self._last_report
            if last is not None and now - last < PROGRESS_INTERVAL:
                return
        self._last_report = now
        await call_callback(self._on_progress, self._snapshot(now, started))

    def _snapshot(self, now: float, started: int) -> BulkProgress:
        elapsed = now - self._t0
        limiter = self._client.rate_limit
        rps: float | None = None
        span = min(limiter.window, elapsed)
        if span > 0:
            rps = limiter.in_window / span
        eta: float | None = None
        windows: int | None = None
        refills_in: float | None = getattr(limiter, "refills_in", None)
        if self._total is not None:
            remaining = max(0, self._total - self._done)
            worked = self._done - self.free
            if remaining == 0:
                eta = 0.0
            elif worked > 0:
                eta = remaining * elapsed / worked
            in_flight = started - self.finished
            need = max(0, self._total - started) * (2 if self._wait else 1) + in_flight
            left = getattr(limiter, "remaining", None)
            windows, by_budget = budget_eta(need, left, refills_in, limiter.limit, limiter.window)
            if remaining and by_budget is not None:
                eta = by_budget if eta is None else max(eta, by_budget)
        counts = self._counts
        return BulkProgress(
            total=self._total,
            done=self._done,
            started=started,
            in_flight=started - self.finished,
            completed=counts[Outcome.COMPLETED],
            already_assigned=counts[Outcome.ALREADY_ASSIGNED],
            failed=counts[Outcome.FAILED],
            errors=counts[Outcome.ERROR],
            submitted=counts[Outcome.SUBMITTED],
            skipped=counts[Outcome.SKIPPED],
            halted=self.halted,
            resumed=self.resumed,
            requests_per_second=rps,
            rate_limited=limiter.rate_limited,
            limit=limiter.limit,
            elapsed=elapsed,
            eta=eta,
            windows_left=windows,
            refills_in=refills_in,
        )


def budget_eta(
    need: int, left: int | None, refills_in: float | None, limit: int | None, window: float
) -> tuple[int | None, float | None]:
    """The rate-limit windows that ``need`` more requests take beyond the ``left`` ones the
    budget has now, and when the last of them opens (None when the budget holds them all, or
    the limit is unknown): the budget refills ``refills_in`` from now, then once a window."""
    if left is None or limit is None:
        return None, None
    if need <= left:
        return 0, None
    windows = math.ceil((need - left) / limit)
    first = window if refills_in is None else refills_in
    return windows, first + (windows - 1) * window
