"""Waiting for background tasks: :class:`TaskPoller`, which polls rarely and notices completion fast.

This module owns the wait loop: sleeping until the planned poll, fetching, the deadline, the
read-after-write grace for ``task_not_found``, progress callbacks and the counters. When to poll,
and what each poll teaches, is the pure schedule of :mod:`katapult_async._schedule`.

Every poll spends the token's per-minute request budget, so the poller learns, per task name, when
tasks finish, and aims to poll each task once, soon after it is done. The schedule of one
:meth:`TaskPoller.wait`:

1. **Unknown name** (nothing learned yet): poll ``poll_interval`` after submission, then back off
   x1.5 per poll, with ±10% jitter, up to ``max_poll_interval``.
2. **Known name**: the first poll (the *probe*) is aimed at the time by which about 85% of tasks of
   that name are done (±5% jitter). Most tasks are done when probed, and cost one poll. While the
   request budget binds (``budget_binding``; the client passes "the rate limiter has callers
   queued"), the probe is aimed at the 98% point instead, and re-planned when it wakes: a probe
   that finds the task running would waste a request another item needed.
3. **Still running after the probe** (the *tail*): the next poll comes soon, after a learned
   fraction of the typical duration, then backs off x1.5 up to ``max_poll_interval``.
4. **Progress rate**: once two ``running`` observations show progress strictly between 0 and 100
   rising, the time left at that rate replaces the backoff or tail gap (at least
   :data:`MIN_POLL_INTERVAL`, at most twice the planned gap). One jump, such as the live API's
   0 -> 5 -> 100, says nothing about the rate and is not used; nor is ``started_at`` (whole seconds,
   on another clock).

No gap is shorter than :data:`MIN_POLL_INTERVAL` (50 ms). Backoff and tail gaps never exceed
``max_poll_interval``; the probe of a task that usually takes longer than that comes when the task
is expected to be done, not before. How the probe time is learned (and why not by averaging
measured durations) is explained in :mod:`katapult_async._schedule`.

Timing uses only the injected ``clock``, ``sleep``, ``wall_clock`` and ``rng``, so the schedule runs
in virtual time in tests. Polling happens inline in the awaiting coroutine: no background task is
created, and cancelling the caller stops polling at once.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable

import attrs

from katapult_async import _telemetry
from katapult_async._callbacks import ProgressCallback, call_callback
from katapult_async._schedule import MIN_POLL_INTERVAL, Rule, Schedule, Watch
from katapult_async.errors import TaskFailedError, TaskNotFoundError, TaskTimeoutError
from katapult_async.models import Task, TaskStatus

__all__ = ["MIN_POLL_INTERVAL", "PollerStats", "TaskPoller"]

_NOT_FOUND_RETRY_MAX = 1.0
_MAX_REPLANS = 3  # times one first poll may be put off after its sleep (budget binding)
_KNOWN_TASK_NOT_FOUND = 3  # late 404s in a row tolerated for a task the API already returned


@attrs.frozen
class PollerStats:
    """Counters of a :class:`TaskPoller`, as a snapshot.

    Attributes:
        polls: Task fetches started (including those answered ``task_not_found``).
        tasks_finished: Waits that ended with the task ``completed`` or ``failed``.
        tasks_completed: Of those, tasks that completed.
        tasks_failed: Of those, tasks that failed.
        timeouts: Waits that raised :class:`~katapult_async.errors.TaskTimeoutError`.
        not_found_retries: ``task_not_found`` answers tolerated as read-after-write lag.
    """

    polls: int = 0
    tasks_finished: int = 0
    tasks_completed: int = 0
    tasks_failed: int = 0
    timeouts: int = 0
    not_found_retries: int = 0


class TaskPoller:
    """Waits for Katapult background tasks, learning per task name when to poll.

    One poller is meant to be shared by every wait of a client, concurrent ones included, so that
    what one task teaches helps the next. See the module documentation for the schedule.

    Args:
        fetch: Fetches a task by id (the client's ``get_task``); raises
            :class:`~katapult_async.errors.TaskNotFoundError` for an unknown id.
        poll_interval: The first gap for tasks of a name not seen before (seconds).
        max_poll_interval: The longest gap of the backoff, and after a missed first poll. The first
            poll of a task of a known name comes when it is expected to be done, even if later.
        not_found_grace: Seconds after submission during which ``task_not_found`` is taken for
            read-after-write lag and retried.
        clock: Monotonic seconds; ``submitted_at`` and timeouts are on this clock.
        sleep: Sleeps for the given seconds.
        wall_clock: Unix seconds, to date a task given by bare id from its ``created_at``.
        rng: Source of jitter (a private ``random.Random()`` by default).
        budget_binding: Says whether requests are the bottleneck right now (the client passes
            "the rate limiter has callers queued"). While it does, the probe is aimed at a high
            quantile of the learned duration (a missed probe wastes a request another item
            needed); otherwise early, for latency.
        budget_left: How many requests may start right now without waiting, or None when that
            is not known (the client passes its rate limiter's view). While that is at least
            two for every task being awaited, a task found still running is polled again at an
            even gap rather than a growing one: the budget is there to notice finishes sooner.

    Raises:
        ValueError: for a negative or non-finite interval, or ``max_poll_interval < poll_interval``.
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[Task]],
        *,
        poll_interval: float = 1.0,
        max_poll_interval: float = 15.0,
        not_found_grace: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        budget_binding: Callable[[], bool] | None = None,
        budget_left: Callable[[], int | None] | None = None,
    ) -> None:
        _check_interval("poll_interval", poll_interval)
        _check_interval("max_poll_interval", max_poll_interval)
        _check_interval("not_found_grace", not_found_grace)
        if max_poll_interval < poll_interval:
            raise ValueError("max_poll_interval must be at least poll_interval")
        self._fetch = fetch
        self._poll_interval = poll_interval
        self._grace = not_found_grace
        self._clock = clock
        self._sleep = sleep
        self._binding = budget_binding
        self._left = budget_left
        self._active = 0  # waits in progress
        self._schedule = Schedule(
            max_poll_interval=max_poll_interval,
            wall_clock=wall_clock,
            rng=rng if rng is not None else random.Random(),
        )
        # Counted in a plain dict (every poll bumps one); the frozen snapshot is made when read.
        self._counts = dict.fromkeys(attrs.fields_dict(PollerStats), 0)

    @property
    def stats(self) -> PollerStats:
        """A snapshot of the poller's counters."""
        return PollerStats(**self._counts)

    def now(self) -> float:
        """The poller's ``clock()``: the time base of ``submitted_at`` and of timeouts."""
        return self._clock()

    def expected_duration(self, name: str | None) -> float | None:
        """Seconds after submission by which about 85% of tasks named ``name`` have finished.

        This is where the first poll of such a task is aimed. ``None`` until one has been seen
        completing.
        """
        return self._schedule.expected_duration(name)

    @_telemetry.traced("katapult.wait_for_task", _telemetry.describe_wait)
    async def wait(
        self,
        task: Task | str,
        *,
        on_progress: ProgressCallback[Task] | None = None,
        timeout: float | None = None,
        poll_interval: float | None = None,
        submitted_at: float | None = None,
    ) -> Task:
        """Poll a task until it completes, and return the completed task.

        Args:
            task: The task (as the API returned it when it was created) or its id. A task that is
                already finished is reported without polling.
            on_progress: Called (sync or async) with the first observation, every change of status
                or progress, and the final observation; never twice for the same state. An
                exception it raises stops polling and propagates.
            timeout: Seconds to wait (on ``clock``) before giving up. No poll is started at or after
                the deadline.
            poll_interval: Overrides the poller's first gap for names not seen before (and the
                ``task_not_found`` retry gap) for this wait.
            submitted_at: The ``clock()`` time the request that created the task was answered.
                Defaults to now when ``task`` is a :class:`Task`; for a bare id, the poller does not
                know, and does not learn from this wait's timing.

        Returns:
            The task, with status ``completed``.

        Raises:
            TaskFailedError: the task ended ``failed`` (``.task`` is the final task).
            TaskTimeoutError: ``timeout`` passed first (``.task`` is the last task seen, or None).
            TaskNotFoundError: the task was still unknown ``not_found_grace`` seconds after
                submission.
        """
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a non-negative number, got {timeout!r}")
        if poll_interval is not None:
            _check_interval("poll_interval", poll_interval)
        self._active += 1
        try:
            return await self._wait(task, on_progress, timeout, poll_interval, submitted_at)
        finally:
            self._active -= 1

    async def _wait(
        self,
        task: Task | str,
        on_progress: ProgressCallback[Task] | None,
        timeout: float | None,
        poll_interval: float | None,
        submitted_at: float | None,
    ) -> Task:
        base = max(
            MIN_POLL_INTERVAL, self._poll_interval if poll_interval is None else poll_interval
        )
        now = self._clock()
        deadline = None if timeout is None else now + timeout
        initial = task if isinstance(task, Task) else None
        watch = self._schedule.start(
            task.id if isinstance(task, Task) else task,
            now=now,
            submitted_at=submitted_at,
            known=initial is not None,
            base=base,
        )
        if initial is not None:
            result = await self._observe(watch, initial, on_progress)
            if result is not None:
                return result
        retry_at: float | None = None  # set after a task_not_found answer within the grace
        misses = 0  # task_not_found answers in a row
        kind: Rule = "first"
        replans = 0  # first polls put off after a sleep (see _replan_later)
        while True:
            now = self._clock()
            if retry_at is not None:
                at = retry_at
            else:
                bound = self._binding is not None and self._binding()
                plenty = not bound and self._plenty()
                at, kind = self._schedule.plan(watch, now, bound=bound, plentiful=plenty)
            if deadline is not None and at >= deadline:
                if deadline > now:
                    await self._sleep(deadline - now)
                self._bump("timeouts")
                raise TaskTimeoutError(watch.last, self._clock() - watch.started, watch.task_id)
            if at > now:
                await self._sleep(at - now)
                if replans < _MAX_REPLANS and self._replan_later(watch, retry_at):
                    replans += 1
                    continue
            sent = self._clock()
            self._bump("polls")
            try:
                current = await self._fetch(watch.task_id)
            except TaskNotFoundError:
                # Read-after-write lag: a task may not be visible yet just after its creation.
                # A task the API already returned exists: a 404 for it that comes late (a poll
                # held back by the rate limiter) is lag too, tolerated a few times in a row.
                answered = self._clock()
                grace_end = watch.ref + self._grace
                misses += 1
                if sent >= grace_end and (watch.last is None or misses > _KNOWN_TASK_NOT_FOUND):
                    raise
                self._bump("not_found_retries")
                gap = min(_NOT_FOUND_RETRY_MAX, max(MIN_POLL_INTERVAL, base / 2))
                retry_at = max(answered + MIN_POLL_INTERVAL, min(answered + gap, grace_end))
                continue
            retry_at = None
            misses = 0
            self._schedule.record_fetch(watch, kind, sent, self._clock(), current)
            telemetry = _telemetry.active
            if telemetry is not None:
                telemetry.poll(current)
            result = await self._observe(watch, current, on_progress)
            if result is not None:
                return result

    def _plenty(self) -> bool:
        """Whether the budget has two requests left for every task awaited (see budget_left)."""
        if self._left is None:
            return False
        left = self._left()
        return left is not None and left >= 2 * self._active

    def _replan_later(self, watch: Watch, retry_at: float | None) -> bool:
        """Whether a first poll, due now, should rather wait for a later probe.

        Only while the budget binds: what other tasks' probes taught during this wait's sleep
        (the first tasks of a run are all planned before any is seen done) may put the probe
        later, and a poll that finds the task running would waste a request the budget needs.
        The new time is still chosen before this task is seen, so the probe stays a fair sample.
        """
        if retry_at is not None or watch.fetches or watch.last is None:
            return False
        if self._binding is None or not self._binding():
            return False
        now = self._clock()
        at, kind = self._schedule.plan(watch, now, bound=True)
        return kind == "probe" and at > now

    async def _observe(
        self, watch: Watch, task: Task, on_progress: ProgressCallback[Task] | None
    ) -> Task | None:
        """Report ``task`` if its state changed; return it if completed, raise if failed."""
        watch.last = task
        if task.status.is_terminal:
            failed = task.status is TaskStatus.FAILED
            self._bump("tasks_finished")
            self._bump("tasks_failed" if failed else "tasks_completed")
            telemetry = _telemetry.active
            if telemetry is not None and watch.learn:
                telemetry.task_finished(task, self._clock() - watch.ref)
        key = (task.status, task.progress)
        if key != watch.last_key:
            watch.last_key = key
            await call_callback(on_progress, task)
        if task.status is TaskStatus.FAILED:
            raise TaskFailedError(task)
        return task if task.status is TaskStatus.COMPLETED else None

    def _bump(self, counter: str) -> None:
        self._counts[counter] += 1


def _check_interval(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
