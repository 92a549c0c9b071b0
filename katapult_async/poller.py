"""Waiting for background tasks: :class:`TaskPoller`, which polls rarely and notices completion fast.

Every poll spends the token's per-minute request budget, so the poller learns, per task name, when
tasks finish, and aims to poll each task once, soon after it is done. The schedule of one
:meth:`TaskPoller.wait`:

1. **Unknown name** (nothing learned yet): poll ``poll_interval`` after submission, then back off
   x1.5 per poll, with ±10% jitter, up to ``max_poll_interval``.
2. **Known name**: the first poll (the *probe*) is aimed at the time by which about 85% of tasks of
   that name are done (±5% jitter). Most tasks are done when probed, and cost one poll.
3. **Still running after the probe** (the *tail*): the next poll comes soon, after a learned
   fraction of the typical duration, then backs off x1.5 up to ``max_poll_interval``.
4. **Progress rate**: once two ``running`` observations show progress strictly between 0 and 100
   rising, the time left at that rate replaces the backoff or tail gap (at least
   :data:`MIN_POLL_INTERVAL`, at most twice the planned gap). One jump, such as the live API's
   0 -> 5 -> 100, says nothing about the rate and is not used; nor is ``started_at`` (whole seconds,
   on another clock).

No gap is shorter than :data:`MIN_POLL_INTERVAL` (50 ms). Backoff and tail gaps never exceed
``max_poll_interval``; the probe of a task that usually takes longer than that comes when the task
is expected to be done, not before.

What is learned, and why this way
---------------------------------
A poll only tells whether the task was done at that moment. A duration measured by the client is an
interval (last seen running, first seen done], and once the schedule works most are (0, probe]:
they say nothing about where in that interval the task finished. Averaging their midpoints or
upper ends would bias the estimate down or up, and the schedule would chase its own bias.

So the probe's outcome is used as what it is, a current-status observation: the probe's time is
chosen before the task is seen, so "done at ``t``" is a fair sample of P(done by ``t``). The last 64
probes of a name (newer ones weigh more, half-life 16) are fitted by maximum likelihood with a
logistic curve in log time, of fixed slope: only its position is estimated, because probes bunch
where the schedule aims them and only the curve there matters. The next probe goes where the curve
reaches 85%; at equilibrium 85% of probes find the task done, whatever the real spread. When every
probe in the window found the task done, the next one is aimed 10% before the earliest of them, so
the poller notices when tasks get faster; when none did, 20% after the latest, or later if recent
tasks were seen done later.

Probes are timed from when they were *sent*. A rate limiter that holds the request thus counts in
the task's favour, and under a binding limit each task costs about one poll; the slower fetches
are compared with task durations, the higher the aim (up to 97%), since a missed probe then costs a
whole extra queueing delay.

The server's ``finished_at - created_at`` measures every completed task without that bias, but the
API sends whole seconds: a 1 s task reads 0, 1 or 2. Server durations are used only where their
resolution is at most a tenth of the duration (whole seconds: tasks of 10 s or more; sub-second
timestamps: nearly always), and only while they agree with the client's interval for the same task:
one disagreement (another clock, a simulator on wall time) switches them off for that name. Once
five usable ones exist, their 85th percentile replaces the probe fit.

The tail gap is a fraction of the median time at which the client saw tasks done; the fraction is
tuned by stochastic approximation so that about 75% of first tail polls find the task done.

Timing uses only the injected ``clock``, ``sleep`` and ``rng``, so the schedule runs in virtual time
in tests. Polling happens inline in the awaiting coroutine: no background task is created, and
cancelling the caller stops polling at once.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Literal

import attrs

from katapult_async._callbacks import ProgressCallback, call_callback
from katapult_async.errors import TaskFailedError, TaskNotFoundError, TaskTimeoutError
from katapult_async.models import Task, TaskStatus

__all__ = ["MIN_POLL_INTERVAL", "PollerStats", "TaskPoller"]

MIN_POLL_INTERVAL = 0.05
"""The shortest gap between two polls of one task, whatever an estimate says (seconds)."""

_BACKOFF = 1.5
_BACKOFF_JITTER = 0.1
_PROBE_QUANTILE = 0.85
_PROBE_QUANTILE_BUSY = 0.97  # target when fetches take as long as the tasks themselves
_PROBE_JITTER = 0.05
_TAIL_QUANTILE = 0.75
_TAIL_RATIO_START = 0.15
_TAIL_RATIO_BOUNDS = (0.02, 1.0)
_TAIL_GAIN = 0.3  # log-space step of the tail-ratio tracker
_PROBE_WINDOW = 64
_PROBE_HALF_LIFE = 16.0
_SLOPE = 1 / 0.12  # of the done curve in log time: durations that vary by about ±20%
_EXPLORE_EARLIER = 0.9
_EXPLORE_LATER = 1.2
_FINISH_WINDOW = 16
_SERVER_WINDOW = 64
_SERVER_MIN_SAMPLES = 5
_SERVER_MAX_RESOLUTION = 0.1  # server durations count only if resolution <= 10% of the duration
_SERVER_LEAD = 0.5  # the server creates a task up to this long before the client sees the answer
_FETCH_DELAY_WEIGHT = 0.2  # EWMA weight of the newest fetch duration
_NOT_FOUND_RETRY_MAX = 1.0
_KNOWN_TASK_NOT_FOUND = 3  # late 404s in a row tolerated for a task the API already returned
_MAX_NAMES = 256

_Rule = Literal["first", "probe", "tail", "backoff"]
"""Which rule planned a poll: the look at a bare id, the learned probe, the tail, the backoff."""


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


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _fit_done_curve(probes: Sequence[tuple[float, bool]]) -> float:
    """Fit P(done by t) = logistic(SLOPE * (log t - m)) to probe outcomes; return ``m``.

    The likelihood equation ``sum w * (done - P(t)) = 0`` is monotone in ``m``, so bisection
    solves it; newer probes weigh more (half-life ``_PROBE_HALF_LIFE`` probes). Only the location
    is fitted: probes bunch where the schedule aims them, which says little about the spread, and
    the fit needs only to be right there. Needs both outcomes among ``probes``.
    """
    n = len(probes)
    data = [
        (0.5 ** ((n - 1 - i) / _PROBE_HALF_LIFE), math.log(max(t, MIN_POLL_INTERVAL)), done)
        for i, (t, done) in enumerate(probes)
    ]
    low = min(x for _, x, _ in data) - 20 / _SLOPE
    high = max(x for _, x, _ in data) + 20 / _SLOPE
    for _ in range(60):
        m = (low + high) / 2
        excess = sum(
            w * ((1.0 if done else 0.0) - _sigmoid(_SLOPE * (x - m))) for w, x, done in data
        )
        if excess > 0:  # more done than the curve predicts: tasks are faster, move m earlier
            high = m
        else:
            low = m
    return (low + high) / 2


def _quantile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile of a non-empty sample, interpolating linearly."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (pos - low) * (ordered[high] - ordered[low])


class _NameModel:
    """What the poller has learned about the tasks of one name."""

    def __init__(self) -> None:
        self.probes: deque[tuple[float, bool]] = deque(maxlen=_PROBE_WINDOW)
        self.finishes: deque[float] = deque(maxlen=_FINISH_WINDOW)
        self.server: deque[float] = deque(maxlen=_SERVER_WINDOW)
        self.server_trusted = True
        self.tail_ratio = _TAIL_RATIO_START
        self._location: float | None = None  # of the fitted done curve, in log seconds

    def probe_offset(self, q: float) -> float | None:
        """Seconds after submission by which a fraction ``q`` of tasks are done, or None."""
        if self.server_trusted and len(self.server) >= _SERVER_MIN_SAMPLES:
            return _quantile(self.server, q)
        beyond = 0.0
        if self.probes:
            done = [t for t, hit in self.probes if hit]
            if len(done) == len(self.probes):
                # Every probe found the task done: try earlier, to notice if tasks got faster.
                return _EXPLORE_EARLIER * min(done)
            if done:
                if self._location is None:
                    self._location = _fit_done_curve(self.probes)
                return math.exp(self._location + math.log(q / (1.0 - q)) / _SLOPE)
            # Every probe found the task running: aim past the latest probe.
            beyond = _EXPLORE_LATER * max(t for t, _ in self.probes)
        if self.finishes:
            return max(beyond, _quantile(self.finishes, q))
        return None

    def typical(self) -> float | None:
        """The median client-observed time from submission to seeing the task done."""
        return _quantile(self.finishes, 0.5) if self.finishes else None

    def add_probe(self, elapsed: float, done: bool) -> None:
        self.probes.append((elapsed, done))
        self._location = None

    def add_server(
        self, duration: float, resolution: float, bracket: tuple[float, float] | None
    ) -> None:
        """Record a server-measured duration, or distrust the server if it contradicts ``bracket``.

        ``bracket`` is the client's (last seen running, first seen done) for the same task, in
        seconds after submission; the server's clock starts a little earlier (``_SERVER_LEAD``).
        """
        if not self.server_trusted:
            return
        if bracket is not None:
            low, high = bracket
            if duration + resolution <= low or duration - resolution > high + _SERVER_LEAD:
                self.server_trusted = False
                self.server.clear()
                return
        if duration > 0 and resolution <= _SERVER_MAX_RESOLUTION * duration:
            self.server.append(duration)

    def update_tail(self, done: bool) -> None:
        """Stochastic approximation: aim for a fraction ``_TAIL_QUANTILE`` of first tail polls done."""
        step = _TAIL_GAIN * (_TAIL_QUANTILE - (1.0 if done else 0.0))
        low, high = _TAIL_RATIO_BOUNDS
        self.tail_ratio = min(high, max(low, self.tail_ratio * math.exp(step)))


def _server_duration(task: Task) -> tuple[float, float] | None:
    """``(finished_at - created_at, resolution)`` in seconds, if the task carries both times."""
    if task.created_at is None or task.finished_at is None:
        return None
    duration = (task.finished_at - task.created_at).total_seconds()
    whole = task.created_at.microsecond == 0 and task.finished_at.microsecond == 0
    return duration, (1.0 if whole else 0.001)


@attrs.define
class _Watch:
    """The state of one :meth:`TaskPoller.wait` call."""

    task_id: str
    started: float
    ref: float  # the submission time, or the best stand-in for it
    learn: bool  # whether ``ref`` is the real submission time (else: no client-side learning)
    probe_jitter: float
    last: Task | None = None
    last_key: tuple[TaskStatus, int] | None = None
    fetches: int = 0  # successful fetches
    backoff_polls: int = 0  # polls planned by the unknown-name backoff
    tail_polls: int = 0  # polls planned by the tail rule
    seen_running_at: float | None = None  # start of the last fetch that found the task not done
    probed: bool = False  # whether the first fetch was aimed by the learned schedule
    rate_from: tuple[float, int] | None = None  # first running observation with 0 < progress < 100
    rate_to: tuple[float, int] | None = None  # latest one with more progress


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
    ) -> None:
        _check_interval("poll_interval", poll_interval)
        _check_interval("max_poll_interval", max_poll_interval)
        _check_interval("not_found_grace", not_found_grace)
        if max_poll_interval < poll_interval:
            raise ValueError("max_poll_interval must be at least poll_interval")
        self._fetch = fetch
        self._poll_interval = poll_interval
        self._max_interval = max(max_poll_interval, MIN_POLL_INTERVAL)
        self._grace = not_found_grace
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._rng = rng if rng is not None else random.Random()
        self._models: dict[str | None, _NameModel] = {}
        self._fetch_delay = 0.0
        self._stats = PollerStats()

    @property
    def stats(self) -> PollerStats:
        """A snapshot of the poller's counters."""
        return self._stats

    def expected_duration(self, name: str | None) -> float | None:
        """Seconds after submission by which about 85% of tasks named ``name`` have finished.

        This is where the first poll of such a task is aimed. ``None`` until one has been seen
        completing.
        """
        model = self._models.get(name)
        return model.probe_offset(_PROBE_QUANTILE) if model is not None else None

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
        base = max(
            MIN_POLL_INTERVAL, self._poll_interval if poll_interval is None else poll_interval
        )
        now = self._clock()
        deadline = None if timeout is None else now + timeout
        initial = task if isinstance(task, Task) else None
        watch = _Watch(
            task_id=task.id if isinstance(task, Task) else task,
            started=now,
            ref=submitted_at if submitted_at is not None else now,
            learn=submitted_at is not None or initial is not None,
            probe_jitter=self._rng.uniform(1.0 - _PROBE_JITTER, 1.0 + _PROBE_JITTER),
        )
        if initial is not None:
            result = await self._observe(watch, initial, on_progress)
            if result is not None:
                return result
        retry_at: float | None = None  # set after a task_not_found answer within the grace
        misses = 0  # task_not_found answers in a row
        kind: _Rule = "first"
        while True:
            now = self._clock()
            if retry_at is not None:
                at = retry_at
            else:
                at, kind = self._plan(watch, now, base)
            if deadline is not None and at >= deadline:
                if deadline > now:
                    await self._sleep(deadline - now)
                self._bump(timeouts=1)
                raise TaskTimeoutError(watch.last, self._clock() - watch.started, watch.task_id)
            if at > now:
                await self._sleep(at - now)
            sent = self._clock()
            self._bump(polls=1)
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
                self._bump(not_found_retries=1)
                gap = min(_NOT_FOUND_RETRY_MAX, max(MIN_POLL_INTERVAL, base / 2))
                retry_at = max(answered + MIN_POLL_INTERVAL, min(answered + gap, grace_end))
                continue
            retry_at = None
            misses = 0
            answered = self._clock()
            self._fetch_delay += _FETCH_DELAY_WEIGHT * ((answered - sent) - self._fetch_delay)
            self._note_fetch(watch, kind, sent, answered, current)
            result = await self._observe(watch, current, on_progress)
            if result is not None:
                return result

    # --- the schedule --------------------------------------------------------------------------

    def _plan(self, watch: _Watch, now: float, base: float) -> tuple[float, _Rule]:
        """When to poll next, and which rule chose it."""
        if watch.last is None:
            return now, "first"  # a bare id: look first, to learn its name and state
        earliest = now + MIN_POLL_INTERVAL
        model = self._models.get(watch.last.name)
        offset = model.probe_offset(self._probe_quantile(model)) if model is not None else None
        if model is None or offset is None:
            if watch.backoff_polls == 0 and watch.fetches == 0:
                gap = min(self._max_interval, base * self._jitter())
                return max(earliest, watch.ref + gap), "backoff"
            gap = min(self._max_interval, base * _BACKOFF**watch.backoff_polls * self._jitter())
            return self._with_eta(watch, now, gap), "backoff"
        probe_at = watch.ref + max(MIN_POLL_INTERVAL, offset) * watch.probe_jitter
        if probe_at >= earliest and watch.tail_polls == 0:
            return probe_at, "probe"
        typical = model.typical() or offset
        gap = max(MIN_POLL_INTERVAL, model.tail_ratio * typical) * _BACKOFF**watch.tail_polls
        return self._with_eta(watch, now, min(self._max_interval, gap)), "tail"

    def _with_eta(self, watch: _Watch, now: float, gap: float) -> float:
        """Move the next poll to the end predicted by the progress rate, within sane bounds."""
        if watch.rate_from is not None and watch.rate_to is not None:
            (t1, p1), (t2, p2) = watch.rate_from, watch.rate_to
            if p2 > p1 and t2 > t1:
                left = (100 - p2) * (t2 - t1) / (p2 - p1) - (now - t2)
                gap = min(max(left, MIN_POLL_INTERVAL), 2 * gap, self._max_interval)
        return now + max(MIN_POLL_INTERVAL, gap)

    def _probe_quantile(self, model: _NameModel) -> float:
        """Aim later when fetches are slow (a queueing rate limiter): a missed probe costs more."""
        typical = model.typical()
        if not typical or self._fetch_delay <= 0:
            return _PROBE_QUANTILE
        share = min(1.0, self._fetch_delay / typical)
        return _PROBE_QUANTILE + (_PROBE_QUANTILE_BUSY - _PROBE_QUANTILE) * share

    def _jitter(self) -> float:
        return self._rng.uniform(1.0 - _BACKOFF_JITTER, 1.0 + _BACKOFF_JITTER)

    # --- observations and learning -------------------------------------------------------------

    def _note_fetch(
        self, watch: _Watch, kind: _Rule, sent: float, answered: float, task: Task
    ) -> None:
        done = task.status.is_terminal
        if (
            watch.fetches == 0
            and kind == "first"
            and not watch.learn
            and task.created_at is not None
        ):
            # A bare id: date the submission from the server's created_at, for scheduling only
            # (whole seconds, another clock: too coarse to learn from).
            age = self._wall_clock() - task.created_at.timestamp()
            watch.ref = min(watch.ref, answered - max(0.0, age))
        if watch.fetches == 0 and kind != "first":
            # The first poll's time was chosen before the task was seen: a fair sample of
            # P(done by then). Recorded now, not at the end, so that slow tasks are not late to
            # the window.
            watch.probed = kind == "probe"
            if watch.learn:
                self._model(task.name).add_probe(sent - watch.ref, done)
        elif kind == "tail" and watch.tail_polls == 0 and watch.probed and watch.learn:
            self._model(task.name).update_tail(done)
        watch.fetches += 1
        if kind == "backoff":
            watch.backoff_polls += 1
        elif kind == "tail":
            watch.tail_polls += 1
        if not done:
            watch.seen_running_at = sent
            if task.status is TaskStatus.RUNNING and 0 < task.progress < 100:
                point = (answered, task.progress)
                if watch.rate_from is None:
                    watch.rate_from = point
                elif task.progress > watch.rate_from[1]:
                    watch.rate_to = point
        elif task.status is TaskStatus.COMPLETED:
            self._learn(watch, answered, task)

    def _model(self, name: str | None) -> _NameModel:
        model = self._models.get(name)
        if model is None:
            if len(self._models) >= _MAX_NAMES:
                del self._models[next(iter(self._models))]
            model = self._models[name] = _NameModel()
        return model

    def _learn(self, watch: _Watch, answered: float, task: Task) -> None:
        """Learn from a completed task: the client's finish time, and the server's duration."""
        model = self._model(task.name)
        bracket = None
        if watch.learn:
            low = 0.0 if watch.seen_running_at is None else watch.seen_running_at - watch.ref
            bracket = (low, answered - watch.ref)
            model.finishes.append(bracket[1])
        server = _server_duration(task)
        if server is not None:
            model.add_server(server[0], server[1], bracket)

    async def _observe(
        self, watch: _Watch, task: Task, on_progress: ProgressCallback[Task] | None
    ) -> Task | None:
        """Report ``task`` if its state changed; return it if completed, raise if failed."""
        watch.last = task
        if task.status.is_terminal:
            failed = task.status is TaskStatus.FAILED
            self._bump(tasks_finished=1, tasks_failed=int(failed), tasks_completed=int(not failed))
        key = (task.status, task.progress)
        if key != watch.last_key:
            watch.last_key = key
            await call_callback(on_progress, task)
        if task.status is TaskStatus.FAILED:
            raise TaskFailedError(task)
        return task if task.status is TaskStatus.COMPLETED else None

    def _bump(self, **counts: int) -> None:
        self._stats = attrs.evolve(
            self._stats, **{k: getattr(self._stats, k) + v for k, v in counts.items()}
        )


def _check_interval(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
