"""The learned poll schedule of :class:`~katapult_async.poller.TaskPoller`: when to poll a task next,
and what each poll teaches about tasks of its name. Pure: no I/O, no asyncio, no clock of its own;
every time is passed in (or read from the injected ``wall_clock``), so it runs in virtual time.

:class:`Schedule` owns one :class:`NameModel` per task name and plans each poll of a :class:`Watch`
(the state of one wait); the poller sleeps until the planned time, fetches, and reports back.

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

While the request budget binds (the poller's ``budget_binding``: the rate limiter has callers
queued), a probe that finds the task running wastes a request another item needed, and detecting a
finish a little later costs nothing, because the budget sets the pace. The probe is then aimed at
the 98% point (``_PROBE_QUANTILE_BOUND``), and a window in which every probe hit is not explored
earlier: that exploration waits until the budget is idle. A task found still running is then
polled again where the fitted curve says 90% of the tasks still running at that time are done
(not after the tail gap below, which is tuned for latency). The poller also re-plans a first poll
when it wakes while the budget binds, so that what other tasks' probes taught during its sleep
(a run's first tasks are all planned before any is seen done) can put it later.

The server's ``finished_at - created_at`` measures every completed task without that bias, but the
API sends whole seconds: a 1 s task reads 0, 1 or 2. Server durations are used only where their
resolution is at most a tenth of the duration (whole seconds: tasks of 10 s or more; sub-second
timestamps: nearly always), and only while they agree with the client's interval for the same task:
one disagreement (another clock, a simulator on wall time) switches them off for that name. Once
five usable ones exist, their 85th percentile replaces the probe fit.

The tail gap is a fraction of the median time at which the client saw tasks done; the fraction is
tuned by stochastic approximation so that about 75% of first tail polls find the task done.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import attrs

from katapult_async.models import Task, TaskStatus

__all__ = ["MIN_POLL_INTERVAL", "NameModel", "Rule", "Schedule", "Watch"]

MIN_POLL_INTERVAL = 0.05
"""The shortest gap between two polls of one task, whatever an estimate says (seconds)."""

_BACKOFF = 1.5
_BACKOFF_JITTER = 0.1
_PROBE_QUANTILE = 0.85
_PROBE_QUANTILE_BUSY = 0.97  # target when fetches take as long as the tasks themselves
_PROBE_QUANTILE_BOUND = 0.98  # target while the request budget binds (callers queue for it)
_PROBE_QUANTILE_TAIL_BOUND = 0.9  # of the tasks still running, while the budget binds
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
_MAX_NAMES = 256

Rule = Literal["first", "probe", "tail", "backoff"]
"""Which rule planned a poll: the look at a bare id, the learned probe, the tail, the backoff."""


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fit_done_curve(probes: Sequence[tuple[float, bool]]) -> float:
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


def quantile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile of a non-empty sample, interpolating linearly."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (pos - low) * (ordered[high] - ordered[low])


class NameModel:
    """What the poller has learned about the tasks of one name."""

    def __init__(self) -> None:
        self.probes: deque[tuple[float, bool]] = deque(maxlen=_PROBE_WINDOW)
        self.finishes: deque[float] = deque(maxlen=_FINISH_WINDOW)
        self.server: deque[float] = deque(maxlen=_SERVER_WINDOW)
        self.server_trusted = True
        self.tail_ratio = _TAIL_RATIO_START
        self._location: float | None = None  # of the fitted done curve, in log seconds
        self._misses = 0  # probes in the window that found the task still running

    def probe_offset(self, q: float, *, bound: bool = False) -> float | None:
        """Seconds after submission by which a fraction ``q`` of tasks are done, or None.

        ``bound``: the request budget binds. When every probe found the task done, the next one
        then goes no earlier than the earliest of them (a deliberate early probe would be a
        wasted request), instead of 10% before it.
        """
        if self.server_trusted and len(self.server) >= _SERVER_MIN_SAMPLES:
            return quantile(self.server, q)
        beyond = 0.0
        probes = self.probes
        if probes:
            if not self._misses:
                # Every probe found the task done: try earlier, to notice if tasks got faster.
                earliest = min(probes)[0]  # (elapsed, True) pairs: the least elapsed
                return (1.0 if bound else _EXPLORE_EARLIER) * earliest
            if self._misses < len(probes):
                return self._time_done(q)
            # Every probe found the task running: aim past the latest probe.
            beyond = _EXPLORE_LATER * max(probes)[0]
        if self.finishes:
            return max(beyond, quantile(self.finishes, q))
        return None

    def offset_given_running(self, q: float, running_at: float) -> float | None:
        """Seconds after submission by which a fraction ``q`` of the tasks still running
        ``running_at`` seconds after it are done, from the fitted done curve; None without one.
        """
        if not 0 < self._misses < len(self.probes):  # the fit needs both outcomes
            return None
        done_then = _sigmoid(_SLOPE * (math.log(max(running_at, MIN_POLL_INTERVAL)) - self._fit()))
        return self._time_done(min(done_then + q * (1.0 - done_then), 1.0 - 1e-9))

    def _fit(self) -> float:
        """The location of the done curve, fitted once per change of the probes (needs both
        outcomes among them)."""
        if self._location is None:
            self._location = fit_done_curve(self.probes)
        return self._location

    def _time_done(self, q: float) -> float:
        """Seconds after submission by which the fitted curve reaches ``q``."""
        return math.exp(self._fit() + math.log(q / (1.0 - q)) / _SLOPE)

    def typical(self) -> float | None:
        """The median client-observed time from submission to seeing the task done."""
        return quantile(self.finishes, 0.5) if self.finishes else None

    def add_probe(self, elapsed: float, done: bool) -> None:
        probes = self.probes
        if len(probes) == probes.maxlen and not probes[0][1]:
            self._misses -= 1  # the oldest, about to drop out, was a miss
        probes.append((elapsed, done))
        self._misses += not done
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


def server_duration(task: Task) -> tuple[float, float] | None:
    """``(finished_at - created_at, resolution)`` in seconds, if the task carries both times."""
    if task.created_at is None or task.finished_at is None:
        return None
    duration = (task.finished_at - task.created_at).total_seconds()
    whole = task.created_at.microsecond == 0 and task.finished_at.microsecond == 0
    return duration, (1.0 if whole else 0.001)


@attrs.define
class Watch:
    """The state of one :meth:`TaskPoller.wait <katapult_async.poller.TaskPoller.wait>` call."""

    task_id: str
    started: float
    ref: float  # the submission time, or the best stand-in for it
    learn: bool  # whether ``ref`` is the real submission time (else: no client-side learning)
    base: float  # the first gap for a name not seen before
    probe_jitter: float
    last: Task | None = None
    last_key: tuple[TaskStatus, int] | None = None  # the state last reported to on_progress
    fetches: int = 0  # successful fetches
    backoff_polls: int = 0  # polls planned by the unknown-name backoff
    tail_polls: int = 0  # polls planned by the tail rule
    seen_running_at: float | None = None  # start of the last fetch that found the task not done
    probed: bool = False  # whether the first fetch was aimed by the learned schedule
    rate_from: tuple[float, int] | None = None  # first running observation with 0 < progress < 100
    rate_to: tuple[float, int] | None = None  # latest one with more progress


class Schedule:
    """Plans the polls of every wait of one poller, and learns from their outcomes, per task name.

    Args:
        max_poll_interval: The longest gap of the backoff and of the tail.
        wall_clock: Unix seconds, to date a task given by bare id from its ``created_at``.
        rng: Source of jitter.
    """

    def __init__(
        self, *, max_poll_interval: float, wall_clock: Callable[[], float], rng: random.Random
    ) -> None:
        self._max_interval = max(max_poll_interval, MIN_POLL_INTERVAL)
        self._wall_clock = wall_clock
        self._rng = rng
        self._models: dict[str | None, NameModel] = {}
        self._fetch_delay = 0.0  # EWMA of how long a fetch takes (limiter queueing included)

    def expected_duration(self, name: str | None) -> float | None:
        """Seconds after submission by which about 85% of tasks named ``name`` have finished."""
        model = self._models.get(name)
        return model.probe_offset(_PROBE_QUANTILE) if model is not None else None

    def start(
        self, task_id: str, *, now: float, submitted_at: float | None, known: bool, base: float
    ) -> Watch:
        """The state of a new wait, begun at ``now``; ``known``: the task itself (not an id) is given."""
        return Watch(
            task_id=task_id,
            started=now,
            ref=submitted_at if submitted_at is not None else now,
            learn=submitted_at is not None or known,
            base=base,
            probe_jitter=self._rng.uniform(1.0 - _PROBE_JITTER, 1.0 + _PROBE_JITTER),
        )

    def plan(
        self, watch: Watch, now: float, *, bound: bool = False, plentiful: bool = False
    ) -> tuple[float, Rule]:
        """When to poll next, and which rule chose it.

        ``bound``: requests are the bottleneck now (the rate limiter has callers queued), so a
        probe that finds the task still running wastes a request that another item needed: the
        probe is aimed at a high quantile (``_PROBE_QUANTILE_BOUND``) rather than early.
        ``plentiful``: the budget has plenty left, so the tail's gap does not grow from poll to
        poll (and the backoff's is a quarter of the first): a task that runs long is noticed
        within one gap of its finish.
        """
        if watch.last is None:
            return now, "first"  # a bare id: look first, to learn its name and state
        earliest = now + MIN_POLL_INTERVAL
        model = self._models.get(watch.last.name)
        offset = (
            model.probe_offset(self._probe_quantile(model, bound), bound=bound)
            if model is not None
            else None
        )
        if model is None or offset is None:
            base = watch.base
            if watch.backoff_polls == 0 and watch.fetches == 0:
                gap = min(self._max_interval, base * self._jitter())
                return max(earliest, watch.ref + gap), "backoff"
            # (With plenty of budget left, a quarter of the first gap, not growing: nothing is
            # learned of the name yet, and a finish is noticed soon.)
            growth = 0.25 if plentiful else _BACKOFF**watch.backoff_polls
            gap = min(self._max_interval, base * growth * self._jitter())
            return self._with_eta(watch, now, gap), "backoff"
        probe_at = watch.ref + max(MIN_POLL_INTERVAL, offset) * watch.probe_jitter
        if probe_at >= earliest and watch.tail_polls == 0:
            return probe_at, "probe"
        if bound and watch.seen_running_at is not None:
            # A poll that finds the task running again would waste a request the budget needs:
            # aim where most of the tasks still running then are done.
            seen = watch.seen_running_at - watch.ref
            later = model.offset_given_running(_PROBE_QUANTILE_TAIL_BOUND, seen)
            if later is not None:
                return max(earliest, watch.ref + min(later, seen + self._max_interval)), "tail"
        typical = model.typical() or offset
        growth = 1.0 if plentiful else _BACKOFF**watch.tail_polls
        gap = max(MIN_POLL_INTERVAL, model.tail_ratio * typical) * growth
        return self._with_eta(watch, now, min(self._max_interval, gap)), "tail"

    def _with_eta(self, watch: Watch, now: float, gap: float) -> float:
        """Move the next poll to the end predicted by the progress rate, within sane bounds."""
        if watch.rate_from is not None and watch.rate_to is not None:
            (t1, p1), (t2, p2) = watch.rate_from, watch.rate_to
            if p2 > p1 and t2 > t1:
                left = (100 - p2) * (t2 - t1) / (p2 - p1) - (now - t2)
                gap = min(max(left, MIN_POLL_INTERVAL), 2 * gap, self._max_interval)
        return now + max(MIN_POLL_INTERVAL, gap)

    def _probe_quantile(self, model: NameModel, bound: bool = False) -> float:
        """Aim later when fetches are slow (a queueing rate limiter): a missed probe costs more.

        While the budget binds, a missed probe costs a request another item needed: aim high.
        """
        if bound:
            return _PROBE_QUANTILE_BOUND
        typical = model.typical()
        if not typical or self._fetch_delay <= 0:
            return _PROBE_QUANTILE
        share = min(1.0, self._fetch_delay / typical)
        return _PROBE_QUANTILE + (_PROBE_QUANTILE_BUSY - _PROBE_QUANTILE) * share

    def _jitter(self) -> float:
        return self._rng.uniform(1.0 - _BACKOFF_JITTER, 1.0 + _BACKOFF_JITTER)

    def record_fetch(
        self, watch: Watch, kind: Rule, sent: float, answered: float, task: Task
    ) -> None:
        """Learn from a fetch planned by ``kind``, sent at ``sent``, that answered ``task``."""
        self._fetch_delay += _FETCH_DELAY_WEIGHT * ((answered - sent) - self._fetch_delay)
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

    def _model(self, name: str | None) -> NameModel:
        model = self._models.get(name)
        if model is None:
            if len(self._models) >= _MAX_NAMES:
                del self._models[next(iter(self._models))]
            model = self._models[name] = NameModel()
        return model

    def _learn(self, watch: Watch, answered: float, task: Task) -> None:
        """Learn from a completed task: the client's finish time, and the server's duration."""
        model = self._model(task.name)
        bracket = None
        if watch.learn:
            low = 0.0 if watch.seen_running_at is None else watch.seen_running_at - watch.ref
            bracket = (low, answered - watch.ref)
            model.finishes.append(bracket[1])
        server = server_duration(task)
        if server is not None:
            model.add_server(server[0], server[1], bracket)
