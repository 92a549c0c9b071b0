"""Tests of :mod:`katapult_async._schedule`, the pure poll schedule, in virtual time.

No event loop, no sockets, no sleeps: times are plain numbers handed to the schedule, and a tiny
driver (:func:`drive`) plays the wait loop by jumping a virtual clock to each planned poll.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from datetime import datetime, timedelta, timezone

import pytest

from katapult_async._schedule import (
    _EXPLORE_EARLIER,
    _PROBE_WINDOW,
    MIN_POLL_INTERVAL,
    NameModel,
    Schedule,
    Watch,
    fit_done_curve,
    quantile,
    server_duration,
)
from katapult_async.models import Task, TaskStatus

NAME = "Change network interface speed profile"
EPOCH = datetime(2026, 8, 17, 12, 0, 0, tzinfo=timezone.utc)


class Midpoint(random.Random):
    """An rng whose jitter is always none: ``uniform(a, b)`` is the middle of the range."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def make_schedule(max_poll_interval: float = 15.0, wall: float = 0.0) -> Schedule:
    return Schedule(max_poll_interval=max_poll_interval, wall_clock=lambda: wall, rng=Midpoint())


def task(
    status: TaskStatus,
    progress: int = 0,
    *,
    name: str | None = NAME,
    created: float | None = None,
    finished: float | None = None,
) -> Task:
    def stamp(at: float | None) -> datetime | None:
        return None if at is None else EPOCH + timedelta(seconds=at)

    return Task("task_1", name, status, stamp(created), None, stamp(finished), progress)


RUNNING = task(TaskStatus.RUNNING, 5)
DONE = task(TaskStatus.COMPLETED, 100)


def watch_of(schedule: Schedule, initial: Task | None = RUNNING, *, base: float = 1.0) -> Watch:
    """A wait begun at virtual time 0 for a task submitted then (as the poller does it)."""
    watch = schedule.start("task_1", now=0.0, submitted_at=0.0, known=True, base=base)
    watch.last = initial
    return watch


def drive(schedule: Schedule, duration: float, *, fetch_delay: float = 0.0) -> tuple[int, float]:
    """Play one wait of a task that is done ``duration`` after submission at 0.

    Returns the number of polls and how late the completion was seen.
    """
    watch = watch_of(schedule)
    now = 0.0
    for polls in range(1, 1000):
        at, kind = schedule.plan(watch, now)
        sent = max(now, at)
        answered = sent + fetch_delay
        current = DONE if sent >= duration else RUNNING
        schedule.record_fetch(watch, kind, sent, answered, current)
        watch.last = current
        now = answered
        if current is DONE:
            return polls, answered - duration
    raise AssertionError("the task was never seen done")


# --- statistics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([3.0], 0.85, 3.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([4.0, 1.0, 3.0, 2.0], 0.0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 1.0, 4.0),
        ([0.0, 10.0, 20.0], 0.85, 17.0),
    ],
)
def test_quantile_interpolates_linearly(values: list[float], q: float, expected: float) -> None:
    assert quantile(values, q) == pytest.approx(expected)


def test_the_done_curve_is_found_where_the_outcomes_change() -> None:
    # Balanced outcomes on either side of 2 s: the curve's middle is at 2 s.
    probes = [(1.8, False), (2.2, True)] * 10
    assert math.exp(fit_done_curve(probes)) == pytest.approx(2.0, rel=0.02)


def test_more_tasks_done_moves_the_curve_earlier() -> None:
    slow = fit_done_curve([(2.0, False)] * 6 + [(2.0, True)] * 4)
    fast = fit_done_curve([(2.0, False)] * 4 + [(2.0, True)] * 6)
    assert fast < math.log(2.0) < slow


def test_newer_probes_weigh_more() -> None:
    old_fast = fit_done_curve([(2.0, True)] * 20 + [(2.0, False)] * 20)
    new_fast = fit_done_curve([(2.0, False)] * 20 + [(2.0, True)] * 20)
    assert new_fast < old_fast


# --- what one name teaches -----------------------------------------------------------------------


def test_a_new_model_knows_nothing() -> None:
    model = NameModel()
    assert model.probe_offset(0.85) is None
    assert model.typical() is None


def test_probes_all_done_aim_earlier_than_the_earliest() -> None:
    model = NameModel()
    for t in (1.5, 1.2, 1.8):
        model.add_probe(t, True)
    assert model.probe_offset(0.85) == pytest.approx(_EXPLORE_EARLIER * 1.2)


def test_the_rule_follows_the_probes_still_in_the_window() -> None:
    model = NameModel()
    for _ in range(_PROBE_WINDOW):
        model.add_probe(0.5, False)
    assert model.probe_offset(0.85) is None  # all running, none seen done: the backoff's turn
    model.add_probe(2.0, True)
    fitted = model.probe_offset(0.85)  # both outcomes: the fitted curve
    assert fitted is not None
    assert fitted > 0.5
    assert model.offset_given_running(0.9, 0.5) is not None
    for _ in range(_PROBE_WINDOW - 1):
        model.add_probe(1.0, True)
    # The last miss has dropped out: every probe in the window found the task done.
    assert model.probe_offset(0.85) == pytest.approx(_EXPLORE_EARLIER * 1.0)
    assert model.offset_given_running(0.9, 0.5) is None


def test_probes_all_running_aim_past_the_latest_or_the_finishes() -> None:
    model = NameModel()
    model.add_probe(2.0, False)
    assert model.probe_offset(0.85) is None  # no finish seen yet
    model.finishes.append(1.0)
    assert model.probe_offset(0.85) == pytest.approx(1.2 * 2.0)
    model.finishes.append(10.0)
    assert model.probe_offset(0.85) == pytest.approx(quantile([1.0, 10.0], 0.85))


def test_mixed_probes_aim_at_the_fitted_quantile() -> None:
    model = NameModel()
    for _ in range(10):
        model.add_probe(1.8, False)
        model.add_probe(2.2, True)
    median = model.probe_offset(0.5)
    later = model.probe_offset(0.85)
    assert median is not None
    assert later is not None
    assert median == pytest.approx(2.0, rel=0.02)
    assert later > median


def test_server_durations_replace_the_fit_once_five_agree() -> None:
    model = NameModel()
    model.add_probe(5.0, True)
    for duration in (0.8, 0.9, 1.0, 1.1):
        model.add_server(duration, 0.001, (0.0, 2.0))
    assert model.probe_offset(0.85) == pytest.approx(_EXPLORE_EARLIER * 5.0)  # four: not yet
    model.add_server(1.2, 0.001, (0.0, 2.0))
    assert model.probe_offset(0.85) == pytest.approx(quantile([0.8, 0.9, 1.0, 1.1, 1.2], 0.85))


def test_coarse_server_durations_are_not_used() -> None:
    model = NameModel()
    for _ in range(5):
        model.add_server(1.0, 1.0, None)  # whole seconds for a 1 s task
    assert len(model.server) == 0
    for _ in range(5):
        model.add_server(12.0, 1.0, None)  # whole seconds for a 12 s task: fine
    assert model.probe_offset(0.85) == pytest.approx(12.0)


def test_a_server_duration_outside_the_clients_bracket_distrusts_the_server() -> None:
    model = NameModel()
    for _ in range(5):
        model.add_server(1.0, 0.001, (0.5, 1.2))
    model.add_server(0.0, 0.001, (0.5, 1.2))  # done before it was last seen running
    assert not model.server_trusted
    assert len(model.server) == 0
    model.add_server(1.0, 0.001, (0.5, 1.2))
    assert len(model.server) == 0  # for good


def test_the_tail_ratio_tracks_its_target_within_bounds() -> None:
    model = NameModel()
    start = model.tail_ratio
    model.update_tail(False)
    assert model.tail_ratio > start  # a miss: wait longer next time
    for _ in range(4):  # three hits per miss hold it still: 75 % of first tail polls hit
        model.update_tail(True)
    assert model.tail_ratio < start
    for _ in range(200):
        model.update_tail(True)
    assert model.tail_ratio == pytest.approx(0.02)
    for _ in range(200):
        model.update_tail(False)
    assert model.tail_ratio == pytest.approx(1.0)


def test_server_duration_and_its_resolution() -> None:
    assert server_duration(task(TaskStatus.COMPLETED, 100)) is None
    whole = task(TaskStatus.COMPLETED, 100, created=0.0, finished=3.0)
    assert server_duration(whole) == (3.0, 1.0)
    precise = task(TaskStatus.COMPLETED, 100, created=0.0, finished=1.25)
    assert server_duration(precise) == (1.25, 0.001)


# --- planning ------------------------------------------------------------------------------------


def test_a_bare_id_is_looked_at_first() -> None:
    schedule = make_schedule()
    watch = schedule.start("task_1", now=3.0, submitted_at=None, known=False, base=1.0)
    assert not watch.learn
    assert schedule.plan(watch, 3.0) == (3.0, "first")


def test_a_bare_id_is_dated_from_its_created_at() -> None:
    created_unix = EPOCH.timestamp()
    schedule = make_schedule(wall=created_unix + 4.0)  # the task was created 4 s ago
    watch = schedule.start("task_1", now=10.0, submitted_at=None, known=False, base=1.0)
    answer = task(TaskStatus.RUNNING, 5, created=0.0)
    schedule.record_fetch(watch, "first", 10.0, 10.0, answer)
    assert watch.ref == pytest.approx(6.0)


def test_unknown_names_back_off_up_to_the_maximum() -> None:
    schedule = make_schedule(max_poll_interval=4.0)
    watch = watch_of(schedule, base=1.0)
    now, times = 0.0, []
    for _ in range(7):
        at, kind = schedule.plan(watch, now)
        assert kind == "backoff"
        schedule.record_fetch(watch, kind, at, at, RUNNING)
        times.append(at)
        now = at
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps == pytest.approx([1.0, 1.5, 2.25, 3.375, 4.0, 4.0, 4.0])


def test_a_known_name_is_probed_where_it_is_usually_done() -> None:
    schedule = make_schedule()
    for _ in range(3):
        drive(schedule, 2.0)
    expected = schedule.expected_duration(NAME)
    assert expected is not None
    watch = watch_of(schedule)
    at, kind = schedule.plan(watch, 0.0)
    assert kind == "probe"
    assert at == pytest.approx(expected)  # jitter: none (Midpoint)
    assert schedule.expected_duration("another name") is None


def test_a_missed_probe_is_followed_by_the_tail() -> None:
    schedule = make_schedule()
    for _ in range(3):
        drive(schedule, 2.0)
    watch = watch_of(schedule)
    now = 0.0
    plans: list[tuple[float, str]] = []
    while len(plans) < 12:
        at, kind = schedule.plan(watch, now)
        schedule.record_fetch(watch, kind, at, at, RUNNING)  # this one takes far longer
        plans.append((at, kind))
        now = at
    kinds = [kind for _, kind in plans]
    assert kinds[0] == "probe"
    assert "tail" in kinds
    tail = [at for at, kind in plans if kind == "tail"]
    gaps = [b - a for a, b in itertools.pairwise(tail)]
    assert all(b == pytest.approx(min(15.0, 1.5 * a)) for a, b in itertools.pairwise(gaps))


def test_a_steady_progress_rate_predicts_the_end() -> None:
    schedule = make_schedule()
    watch = watch_of(schedule, base=1.0)
    for t, progress in ((1.0, 10), (2.0, 20)):  # 10 % per second: done at 10 s
        _, kind = schedule.plan(watch, t)
        schedule.record_fetch(watch, kind, t, t, task(TaskStatus.RUNNING, progress))
    at, _ = schedule.plan(watch, 2.0)
    # Backoff alone says 2.25 s; the rate says 8 s, capped at twice the backoff gap.
    assert at == pytest.approx(2.0 + 2 * 2.25)


def test_no_plan_is_closer_than_the_floor() -> None:
    schedule = make_schedule()
    for _ in range(20):
        drive(schedule, 0.001)
    watch = watch_of(schedule)
    now = 0.0
    for _ in range(20):
        at, kind = schedule.plan(watch, now)
        assert at - now >= MIN_POLL_INTERVAL - 1e-12 or kind == "probe"
        schedule.record_fetch(watch, kind, at, at, RUNNING)
        now = at


def test_names_are_forgotten_oldest_first_beyond_256() -> None:
    schedule = make_schedule()
    for n in range(257):
        watch = watch_of(schedule, task(TaskStatus.RUNNING, 5, name=f"name {n}"))
        schedule.record_fetch(
            watch, "backoff", 1.0, 1.0, task(TaskStatus.COMPLETED, 100, name=f"name {n}")
        )
    assert schedule.expected_duration("name 0") is None
    assert schedule.expected_duration("name 1") is not None
    assert schedule.expected_duration("name 256") is not None


# --- the learned schedule, end to end in virtual time --------------------------------------------


def test_learned_schedule_polls_about_once_and_detects_fast() -> None:
    schedule = Schedule(max_poll_interval=15.0, wall_clock=lambda: 0.0, rng=random.Random(1))
    rng = random.Random(7)
    results = [drive(schedule, rng.uniform(0.7, 1.3)) for _ in range(40)]
    polls = [p for p, _ in results[10:]]
    late = [lateness for _, lateness in results[10:]]
    assert statistics.mean(polls) <= 1.5
    assert statistics.median(late) <= 0.5
    expected = schedule.expected_duration(NAME)
    assert expected is not None
    assert 1.0 <= expected <= 1.45  # the 85th percentile of U(0.7, 1.3) is 1.21


def test_slow_fetches_aim_the_probe_later() -> None:
    quick, slow = make_schedule(), make_schedule()
    for _ in range(10):
        drive(quick, 2.0)
        drive(slow, 2.0, fetch_delay=2.0)  # a queueing rate limiter: fetches as long as tasks
    quick_at, _ = quick.plan(watch_of(quick), 0.0)
    slow_at, _ = slow.plan(watch_of(slow), 0.0)
    assert slow_at > quick_at


# --- a binding request budget --------------------------------------------------------------------


def test_a_binding_budget_aims_the_probe_at_a_high_quantile() -> None:
    schedule = make_schedule()
    model = schedule._model(NAME)
    for _ in range(10):
        model.add_probe(1.8, False)
        model.add_probe(2.2, True)
    watch = watch_of(schedule)
    idle_at, idle_kind = schedule.plan(watch, 0.0)
    bound_at, bound_kind = schedule.plan(watch, 0.0, bound=True)
    assert idle_kind == bound_kind == "probe"
    assert bound_at == pytest.approx(model.probe_offset(0.98))  # jitter: none (Midpoint)
    assert bound_at > idle_at


def test_all_done_probes_under_a_binding_budget_are_not_aimed_earlier() -> None:
    model = NameModel()
    for t in (1.5, 1.2, 1.8):
        model.add_probe(t, True)
    assert model.probe_offset(0.98, bound=True) == pytest.approx(1.2)
    assert model.probe_offset(0.98) == pytest.approx(_EXPLORE_EARLIER * 1.2)  # idle: earlier


def test_a_binding_budget_wastes_fewer_probes_on_widely_spread_tasks() -> None:
    def misses(bound: bool) -> int:
        schedule = Schedule(max_poll_interval=15.0, wall_clock=lambda: 0.0, rng=random.Random(1))
        rng = random.Random(7)
        missed = 0
        for _ in range(200):
            duration = rng.uniform(0.5, 1.5)
            watch = watch_of(schedule)
            at, kind = schedule.plan(watch, 0.0, bound=bound)
            done = at >= duration
            schedule.record_fetch(watch, kind, at, at, DONE if done else RUNNING)
            if not done:
                missed += 1
                schedule.record_fetch(watch, "tail", duration, duration, DONE)
        return missed

    assert misses(bound=True) * 2 < misses(bound=False)


def test_a_binding_budget_polls_a_running_task_again_where_most_such_are_done() -> None:
    schedule = Schedule(max_poll_interval=15.0, wall_clock=lambda: 0.0, rng=random.Random(1))
    model = schedule._model(NAME)
    for t, done in ((0.9, False), (1.0, True), (1.1, True), (0.95, False), (1.05, True)):
        model.add_probe(t, done)
    watch = watch_of(schedule)
    late = model.probe_offset(0.98)
    assert late is not None
    now = late + 0.1  # a probe held back past even the 98 % point finds the task running
    schedule.record_fetch(watch, "probe", now, now, RUNNING)
    idle_at, idle_kind = schedule.plan(watch, now)
    bound_at, bound_kind = schedule.plan(watch, now, bound=True)
    assert idle_kind == bound_kind == "tail"
    expected = model.offset_given_running(0.9, now)
    assert expected is not None
    assert expected > now
    assert bound_at == pytest.approx(expected)
    assert bound_at > idle_at  # idle: the short, latency-tuned tail gap
    # Of the tasks still running then, 90 % are done by ``expected`` on the fitted curve.
    low, high = model.offset_given_running(0.5, now), model.offset_given_running(0.99, now)
    assert low is not None
    assert high is not None
    assert low < expected < high
