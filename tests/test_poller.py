"""Tests of :mod:`katapult_async.poller`, in virtual time against a fake task server."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

import attrs
import pytest

from katapult_async._ratelimit import RateLimiter
from katapult_async.errors import TaskFailedError, TaskNotFoundError, TaskTimeoutError
from katapult_async.models import Task, TaskStatus
from katapult_async.poller import MIN_POLL_INTERVAL, PollerStats, TaskPoller

T = TypeVar("T")

EPOCH = 1_786_977_447.0  # unix time of virtual time 0 (a recorded task's created_at)
NAME = "Change network interface speed profile"
NEVER = float("inf")
TOLERANCE = 1e-9


class VirtualTime:
    """A virtual clock. ``sleep`` advances it at once, or, inside :meth:`gather`, schedules.

    :meth:`gather` is a tiny scheduler for concurrent waits: it lets every coroutine run until each
    is finished or asleep, then wakes the earliest sleeper and moves the clock to its time.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._scheduling = False

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH + self.now

    async def sleep(self, delay: float) -> None:
        assert delay >= 0, delay
        self.sleeps.append(delay)
        if not self._scheduling:
            self.now += delay
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + delay, self._seq, future))
        self._seq += 1
        await future

    async def gather(self, *coros: Coroutine[Any, Any, T]) -> list[T]:
        self._scheduling = True
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            while True:
                for _ in range(10_000):
                    running = sum(not t.done() for t in tasks)
                    if running <= sum(not f.done() for _, _, f in self._timers):
                        break
                    await asyncio.sleep(0)
                else:
                    raise RuntimeError("a coroutine neither finishes nor sleeps")
                if all(t.done() for t in tasks):
                    return [t.result() for t in tasks]
                when, _, future = heapq.heappop(self._timers)
                self.now = max(self.now, when)
                future.set_result(None)
        finally:
            self._scheduling = False


@attrs.define
class _FakeTask:
    name: str
    created: float
    duration: float
    fail: bool
    not_found: int
    fetches: list[float] = attrs.field(factory=list)


class FakeServer:
    """Computes each task's state from the virtual clock, like the live API.

    Tasks are pending for their first 10% (1 s at most), then running (progress 5, as live, or rising linearly),
    then completed or failed with progress 100. ``stamps`` chooses the timestamps: whole unix
    seconds (as live), sub-second, ``"wall"`` (real time: a clock the client cannot reconcile), or
    none.
    """

    def __init__(
        self,
        vt: VirtualTime,
        *,
        stamps: Literal["int", "float", "wall"] | None = "int",
        progress: Literal["live", "linear"] = "live",
        acquire: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.vt = vt
        self.stamps = stamps
        self.progress = progress
        self.acquire = acquire
        self.tasks: dict[str, _FakeTask] = {}

    def submit(
        self,
        duration: float,
        *,
        name: str = NAME,
        fail: bool = False,
        not_found: int = 0,
    ) -> Task:
        """Create a task now and return the PATCH's answer (pending)."""
        task_id = f"task_{len(self.tasks) + 1:04d}"
        self.tasks[task_id] = _FakeTask(name, self.vt.now, duration, fail, not_found)
        return self.snapshot(task_id)

    def _stamp(self, at: float) -> datetime | None:
        if self.stamps is None:
            return None
        if self.stamps == "wall":
            return datetime.fromtimestamp(time.time(), tz=timezone.utc)
        value = EPOCH + at
        return datetime.fromtimestamp(
            float(int(value)) if self.stamps == "int" else value, tz=timezone.utc
        )

    def snapshot(self, task_id: str) -> Task:
        spec = self.tasks[task_id]
        elapsed = self.vt.now - spec.created
        start = min(0.1 * spec.duration, 1.0)
        created = self._stamp(spec.created)
        if elapsed >= spec.duration:
            status = TaskStatus.FAILED if spec.fail else TaskStatus.COMPLETED
            return Task(
                task_id,
                spec.name,
                status,
                created,
                self._stamp(spec.created + start),
                self._stamp(spec.created + spec.duration),
                100,
            )
        if elapsed < start:
            return Task(task_id, spec.name, TaskStatus.PENDING, created, None, None, 0)
        progress = 5
        if self.progress == "linear":
            progress = min(99, max(1, int(100 * (elapsed - start) / (spec.duration - start))))
        started = self._stamp(spec.created + start)
        return Task(task_id, spec.name, TaskStatus.RUNNING, created, started, None, progress)

    async def fetch(self, task_id: str) -> Task:
        if self.acquire is not None:
            await self.acquire()
        spec = self.tasks[task_id]
        spec.fetches.append(self.vt.now)
        if spec.not_found > 0:
            spec.not_found -= 1
            raise TaskNotFoundError("No task was found", status=404, code="task_not_found")
        return self.snapshot(task_id)

    def polls(self, task_id: str) -> int:
        return len(self.tasks[task_id].fetches)

    def fetch_times(self, task_id: str) -> list[float]:
        return self.tasks[task_id].fetches

    def finish_time(self, task_id: str) -> float:
        spec = self.tasks[task_id]
        return spec.created + spec.duration


def make_poller(
    vt: VirtualTime, fetch: Callable[[str], Awaitable[Task]], **options: Any
) -> TaskPoller:
    return TaskPoller(
        fetch,
        clock=vt.clock,
        sleep=vt.sleep,
        wall_clock=vt.wall,
        rng=random.Random(1234),
        **options,
    )


def scripted(vt: VirtualTime, *answers: Task) -> tuple[Callable[[str], Awaitable[Task]], list[str]]:
    """A fetch that returns ``answers`` in turn, and the list of ids it was called with."""
    pending: Iterator[Task] = iter(answers)
    calls: list[str] = []

    async def fetch(task_id: str) -> Task:
        calls.append(task_id)
        return next(pending)

    return fetch, calls


def snap(status: TaskStatus, progress: int, task_id: str = "task_0001") -> Task:
    return Task(task_id, NAME, status, progress=progress)


PENDING = snap(TaskStatus.PENDING, 0)
RUNNING_5 = snap(TaskStatus.RUNNING, 5)
RUNNING_50 = snap(TaskStatus.RUNNING, 50)
COMPLETED = snap(TaskStatus.COMPLETED, 100)
FAILED = snap(TaskStatus.FAILED, 100)


# --- outcomes ------------------------------------------------------------------------------------


async def test_returns_the_completed_task() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)
    task = server.submit(2.5)

    final = await poller.wait(task, submitted_at=vt.now)

    assert final.status is TaskStatus.COMPLETED
    assert final.id == task.id
    assert final.progress == 100
    assert vt.now >= 2.5
    assert poller.stats == PollerStats(
        polls=server.polls(task.id), tasks_finished=1, tasks_completed=1
    )


async def test_failed_task_raises_with_the_task() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)
    task = server.submit(1.5, fail=True)

    with pytest.raises(TaskFailedError) as info:
        await poller.wait(task)

    assert info.value.task.status is TaskStatus.FAILED
    assert info.value.task.id == task.id
    assert poller.stats.tasks_failed == 1
    assert poller.stats.tasks_finished == 1


async def test_timeout_raises_with_the_last_task_and_the_time_waited() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)
    task = server.submit(NEVER)

    with pytest.raises(TaskTimeoutError) as info:
        await poller.wait(task, timeout=10.0)

    assert info.value.waited == pytest.approx(10.0)
    assert vt.now == pytest.approx(10.0)  # slept up to the deadline, not past it
    assert info.value.task is not None
    assert info.value.task.status is TaskStatus.RUNNING
    assert all(t < 10.0 for t in server.fetch_times(task.id))  # no poll started at the deadline
    assert isinstance(info.value, TimeoutError)
    assert poller.stats.timeouts == 1


async def test_timeout_before_a_bare_id_was_ever_seen() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)
    task = server.submit(NEVER)

    with pytest.raises(TaskTimeoutError) as info:
        await poller.wait(task.id, timeout=0)

    assert info.value.task is None
    assert task.id in str(info.value)
    assert server.polls(task.id) == 0


@pytest.mark.parametrize("final", [COMPLETED, FAILED])
async def test_a_finished_task_is_reported_without_polling(final: Task) -> None:
    vt = VirtualTime()
    fetch, calls = scripted(vt)
    poller = make_poller(vt, fetch)
    seen: list[Task] = []

    if final.status is TaskStatus.COMPLETED:
        assert await poller.wait(final, on_progress=seen.append) is final
    else:
        with pytest.raises(TaskFailedError):
            await poller.wait(final, on_progress=seen.append)

    assert seen == [final]
    assert calls == []
    assert vt.now == 0
    assert poller.stats.polls == 0


async def test_a_bare_id_is_looked_up_at_once() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)
    task = server.submit(3.0)
    vt.now = 1.0

    final = await poller.wait(task.id)

    assert final.status is TaskStatus.COMPLETED
    assert server.fetch_times(task.id)[0] == 1.0


async def test_a_bare_id_is_dated_from_its_created_at() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)
    await run_sequentially(poller, server, [3.0] * 8)
    expected = poller.expected_duration(NAME)
    assert expected is not None
    vt.now = 100.0  # a whole unix second, so the whole-second created_at is exact
    task = server.submit(3.0)
    vt.now = 101.0

    await poller.wait(task.id)

    looked, probed = server.fetch_times(task.id)[:2]
    assert looked == 101.0
    assert 100.0 + 0.95 * expected <= probed <= 100.0 + 1.05 * expected  # not 101 + expected


# --- progress callbacks --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_progress_callback_sees_each_state_once(kind: str) -> None:
    vt = VirtualTime()
    fetch, calls = scripted(vt, RUNNING_5, RUNNING_5, RUNNING_50, RUNNING_50, COMPLETED)
    poller = make_poller(vt, fetch)
    seen: list[tuple[TaskStatus, int]] = []

    def sync_callback(task: Task) -> None:
        seen.append((task.status, task.progress))

    async def async_callback(task: Task) -> None:
        await asyncio.sleep(0)
        seen.append((task.status, task.progress))

    callback = sync_callback if kind == "sync" else async_callback
    await poller.wait(PENDING, on_progress=callback)

    assert seen == [
        (TaskStatus.PENDING, 0),
        (TaskStatus.RUNNING, 5),
        (TaskStatus.RUNNING, 50),
        (TaskStatus.COMPLETED, 100),
    ]
    assert len(calls) == 5


async def test_progress_callback_sees_the_failed_task() -> None:
    vt = VirtualTime()
    fetch, _ = scripted(vt, RUNNING_5, FAILED)
    poller = make_poller(vt, fetch)
    seen: list[Task] = []

    with pytest.raises(TaskFailedError):
        await poller.wait(PENDING, on_progress=seen.append)

    assert seen == [PENDING, RUNNING_5, FAILED]


async def test_callback_error_propagates_and_stops_polling() -> None:
    vt = VirtualTime()
    fetch, calls = scripted(vt, RUNNING_5, RUNNING_50, COMPLETED)
    poller = make_poller(vt, fetch)

    async def callback(task: Task) -> None:
        if task.status is TaskStatus.RUNNING:
            raise RuntimeError("display broke")

    with pytest.raises(RuntimeError, match="display broke"):
        await poller.wait(PENDING, on_progress=callback)
    sleeps = len(vt.sleeps)
    await asyncio.sleep(0)

    assert calls == ["task_0001"]
    assert len(vt.sleeps) == sleeps


async def test_callback_error_on_the_first_observation_means_no_poll() -> None:
    vt = VirtualTime()
    fetch, calls = scripted(vt, COMPLETED)
    poller = make_poller(vt, fetch)

    def callback(task: Task) -> None:
        raise ValueError(task.status)

    with pytest.raises(ValueError, match="pending"):
        await poller.wait(PENDING, on_progress=callback)
    assert calls == []


# --- cancellation (real asyncio) -----------------------------------------------------------------


async def test_cancelling_a_wait_in_a_fetch_leaves_nothing_behind() -> None:
    entered = asyncio.Event()
    cancelled: list[str] = []

    async def fetch(task_id: str) -> Task:
        entered.set()
        try:
            await asyncio.Event().wait()  # a request that never answers
        except asyncio.CancelledError:
            cancelled.append(task_id)
            raise
        raise AssertionError("unreachable")

    poller = TaskPoller(fetch, poll_interval=0.01)
    waiter = asyncio.create_task(poller.wait("task_0001"))
    await entered.wait()
    assert asyncio.all_tasks() == {asyncio.current_task(), waiter}  # polling runs inline

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert cancelled == ["task_0001"]
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert poller.stats.polls == 1


async def test_cancelling_a_wait_between_polls_stops_polling() -> None:
    calls: list[str] = []

    async def fetch(task_id: str) -> Task:
        calls.append(task_id)
        return RUNNING_5

    poller = TaskPoller(fetch, poll_interval=30.0, max_poll_interval=60.0)
    waiter = asyncio.create_task(poller.wait(PENDING))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0.01)

    assert calls == []
    assert asyncio.all_tasks() == {asyncio.current_task()}


# --- task_not_found grace ------------------------------------------------------------------------


async def test_not_found_just_after_submission_is_retried() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)
    task = server.submit(1.0, not_found=2)

    final = await poller.wait(task, submitted_at=vt.now)

    assert final.status is TaskStatus.COMPLETED
    assert poller.stats.not_found_retries == 2
    assert server.polls(task.id) == 3


async def test_not_found_for_longer_than_the_grace_raises() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch, not_found_grace=5.0)
    task = server.submit(1.0, not_found=10**6)

    with pytest.raises(TaskNotFoundError):
        await poller.wait(task, submitted_at=vt.now)

    times = server.fetch_times(task.id)
    assert times[-1] >= 5.0
    assert times[-2] < 5.0
    assert len(times) <= 12  # retried about every half poll_interval, not in a tight loop


async def test_not_found_after_the_grace_raises_at_once() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch, not_found_grace=5.0)
    task = server.submit(1.0, not_found=1)
    vt.now = 60.0

    with pytest.raises(TaskNotFoundError):
        await poller.wait(task.id, submitted_at=0.0)

    assert server.polls(task.id) == 1


async def test_a_late_not_found_for_a_task_already_seen_is_tolerated() -> None:
    # A poll held back by the rate limiter may meet a transient 404 long after submission; the task
    # exists (the PATCH returned it), so a few such answers in a row are lag, not an end.
    vt = VirtualTime()
    server = FakeServer(vt)
    task = server.submit(8.0)
    calls = 0

    async def flaky_fetch(task_id: str) -> Task:
        nonlocal calls
        calls += 1
        if vt.now > 2.0 and calls in (2, 3):
            raise TaskNotFoundError("No task was found", status=404, code="task_not_found")
        return await server.fetch(task_id)

    poller = make_poller(vt, flaky_fetch, not_found_grace=1.0)
    final = await poller.wait(task, submitted_at=vt.now)

    assert final.status is TaskStatus.COMPLETED
    assert poller.stats.not_found_retries == 2


# --- the learned schedule ------------------------------------------------------------------------


async def run_sequentially(
    poller: TaskPoller, server: FakeServer, durations: list[float], name: str = NAME
) -> tuple[list[int], list[float]]:
    """Submit and wait for each task in turn; return polls per task and detection latencies."""
    polls: list[int] = []
    latencies: list[float] = []
    for duration in durations:
        task = server.submit(duration, name=name)
        await poller.wait(task, submitted_at=server.vt.now)
        polls.append(server.polls(task.id))
        latencies.append(server.vt.now - server.finish_time(task.id))
    return polls, latencies


async def test_learned_schedule_polls_about_once_and_detects_fast() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch, poll_interval=1.0)
    rng = random.Random(7)

    polls, latencies = await run_sequentially(
        poller, server, [rng.uniform(0.7, 1.3) for _ in range(30)]
    )

    assert statistics.mean(polls[10:]) <= 1.5
    assert statistics.median(latencies[10:]) <= 0.5
    assert min(latencies) >= 0
    expected = poller.expected_duration(NAME)
    assert expected is not None
    assert 1.0 <= expected <= 1.45  # the 85th percentile of U(0.7, 1.3) is 1.21


async def test_a_second_batch_costs_fewer_polls_than_the_first_tasks() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch, poll_interval=1.0)
    rng = random.Random(11)

    first, _ = await run_sequentially(poller, server, [rng.uniform(3.6, 4.4) for _ in range(10)])
    second, _ = await run_sequentially(poller, server, [rng.uniform(3.6, 4.4) for _ in range(20)])

    assert statistics.mean(first[:3]) >= 2  # unknown at first: polled at about 1, 2.5 and 4.75 s
    assert statistics.mean(second) < statistics.mean(first[:3])
    assert statistics.mean(second) <= 1.5


async def test_names_are_learned_separately() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)

    await run_sequentially(poller, server, [1.0] * 5, name="fast")
    await run_sequentially(poller, server, [6.0] * 5, name="slow")

    fast, slow = poller.expected_duration("fast"), poller.expected_duration("slow")
    assert fast is not None
    assert slow is not None
    assert fast < 2.0 < 5.0 < slow
    assert poller.expected_duration("never seen") is None


async def test_concurrent_waits_share_what_they_learn() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)
    rng = random.Random(3)
    queue = list(range(120))
    results: dict[int, tuple[int, float]] = {}

    async def worker() -> None:
        while queue:
            index = queue.pop(0)
            task = server.submit(rng.uniform(0.7, 1.3))
            await poller.wait(task, submitted_at=vt.now)
            results[index] = (server.polls(task.id), vt.now - server.finish_time(task.id))

    await vt.gather(*(worker() for _ in range(20)))

    later = [results[i] for i in range(40, 120)]
    assert statistics.mean(p for p, _ in later) <= 1.5
    assert statistics.median(lat for _, lat in later) <= 0.5


async def test_under_a_binding_rate_limit_each_task_costs_about_one_poll() -> None:
    vt = VirtualTime()
    next_slot = [0.0]

    async def acquire() -> None:  # a FIFO limiter: 5 requests per virtual second
        slot = max(vt.now, next_slot[0])
        next_slot[0] = slot + 0.2
        if slot > vt.now:
            await vt.sleep(slot - vt.now)

    server = FakeServer(vt, acquire=acquire)
    poller = make_poller(vt, server.fetch)
    rng = random.Random(5)
    queue = list(range(100))
    polls: list[int] = []

    async def worker() -> None:
        while queue:
            queue.pop(0)
            await acquire()  # the PATCH that creates the task spends the budget too
            task = server.submit(rng.uniform(0.7, 1.3))
            await poller.wait(task, submitted_at=vt.now)
            polls.append(server.polls(task.id))

    await vt.gather(*(worker() for _ in range(20)))

    assert statistics.mean(polls[20:]) <= 1.1
    assert vt.now <= 100 * 2 * 0.2 * 1.1  # about two requests per task: PATCH and one poll


async def test_progress_rate_predicts_the_finish() -> None:
    vt = VirtualTime()
    server = FakeServer(vt, progress="linear")
    poller = make_poller(vt, server.fetch, poll_interval=1.0)
    task = server.submit(10.0)

    await poller.wait(task, submitted_at=vt.now)

    # Plain backoff would poll at about 1, 2.5, 4.75, 8.1 and 13.2 s: 3 s late.
    assert vt.now - server.finish_time(task.id) < 0.5
    assert server.polls(task.id) <= 5


# --- server timestamps ---------------------------------------------------------------------------


async def test_precise_server_durations_are_used() -> None:
    vt = VirtualTime()
    server = FakeServer(vt, stamps="float")
    poller = make_poller(vt, server.fetch)
    durations = [0.8 + 0.04 * i for i in range(11)]  # 0.8 .. 1.2

    await run_sequentially(poller, server, durations)

    # the 85th percentile of the durations themselves, not of the client's (later) sightings
    assert poller.expected_duration(NAME) == pytest.approx(1.14, abs=1e-3)


async def test_server_durations_on_another_clock_are_ignored() -> None:
    vt = VirtualTime()
    server = FakeServer(vt, stamps="wall")  # real time: every task seems to take ~0 s
    poller = make_poller(vt, server.fetch)
    rng = random.Random(9)

    polls, latencies = await run_sequentially(
        poller, server, [rng.uniform(0.7, 1.3) for _ in range(30)]
    )

    expected = poller.expected_duration(NAME)
    assert expected is not None
    assert expected > 0.7
    assert statistics.mean(polls[10:]) <= 1.5
    assert statistics.median(latencies[10:]) <= 0.5


# --- backoff and the floor -----------------------------------------------------------------------


def gaps(submitted: float, times: list[float]) -> list[float]:
    points = [submitted, *times]
    return [b - a for a, b in itertools.pairwise(points)]


async def test_unknown_names_back_off_towards_the_maximum() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch, poll_interval=1.0, max_poll_interval=8.0)
    task = server.submit(NEVER)

    with pytest.raises(TaskTimeoutError):
        await poller.wait(task, submitted_at=0.0, timeout=120.0)

    steps = gaps(0.0, server.fetch_times(task.id))
    assert 0.9 <= steps[0] <= 1.1
    assert all(s <= 8.0 + TOLERANCE for s in steps)
    assert all(b >= 0.8 * a for a, b in itertools.pairwise(steps))
    assert steps[-3:] == pytest.approx([8.0, 8.0, 8.0])
    assert len(steps) < 25  # 120 s at 1 s would be 120 polls


async def test_no_gap_is_shorter_than_the_floor() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch, poll_interval=0.0)

    # Tasks that finish at once teach the poller a tiny duration, then one never finishes.
    await run_sequentially(poller, server, [0.001] * 20)
    stuck = server.submit(NEVER)
    with pytest.raises(TaskTimeoutError):
        await poller.wait(stuck, submitted_at=vt.now, timeout=3.0)

    for task_id, spec in server.tasks.items():
        steps = gaps(spec.created, server.fetch_times(task_id))
        assert min(steps) >= MIN_POLL_INTERVAL - TOLERANCE, task_id
    assert min(vt.sleeps) >= 0


async def test_a_poller_is_idle_between_polls() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch)
    task = server.submit(60.0)

    await poller.wait(task, submitted_at=vt.now)

    assert len(vt.sleeps) == server.polls(task.id)  # one sleep per poll: no busy loop


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"poll_interval": -1.0},
        {"poll_interval": float("nan")},
        {"max_poll_interval": float("inf")},
        {"poll_interval": 5.0, "max_poll_interval": 1.0},
        {"not_found_grace": -0.1},
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any]) -> None:
    async def fetch(task_id: str) -> Task:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match=r"interval|grace"):
        TaskPoller(fetch, **options)


async def test_bad_wait_options_are_rejected() -> None:
    vt = VirtualTime()
    fetch, _ = scripted(vt)
    poller = make_poller(vt, fetch)
    with pytest.raises(ValueError, match="timeout"):
        await poller.wait(PENDING, timeout=-1)
    with pytest.raises(ValueError, match="poll_interval"):
        await poller.wait(PENDING, poll_interval=-1)


# --- a binding request budget --------------------------------------------------------------------


async def test_the_limiter_reports_its_queued_callers() -> None:
    vt = VirtualTime()
    limiter = RateLimiter(1, 10.0, clock=vt.clock, sleep=vt.sleep, probe=False)
    await limiter.acquire()
    seen: list[int] = []

    async def look() -> None:
        await asyncio.sleep(0)
        seen.append(limiter.waiting)

    await vt.gather(limiter.acquire(), look())

    assert seen == [1]  # the second caller queued for the next window
    assert limiter.waiting == 0


async def _bound_run(*, binding: bool, spacing: float = 0.05) -> list[int]:
    """200 tasks of 0.5-1.5 s, 20 workers, a FIFO budget of one request per ``spacing``."""
    vt = VirtualTime()
    next_slot = [0.0]
    waiting = [0]

    async def acquire() -> None:
        slot = max(vt.now, next_slot[0])
        next_slot[0] = slot + spacing
        if slot > vt.now:
            waiting[0] += 1
            try:
                await vt.sleep(slot - vt.now)
            finally:
                waiting[0] -= 1

    server = FakeServer(vt, acquire=acquire)
    poller = make_poller(
        vt, server.fetch, budget_binding=(lambda: waiting[0] > 0) if binding else None
    )
    rng = random.Random(5)
    queue = list(range(200))
    polls: list[int] = []

    async def worker() -> None:
        while queue:
            queue.pop(0)
            await acquire()
            task = server.submit(rng.uniform(0.5, 1.5))
            await poller.wait(task, submitted_at=vt.now)
            polls.append(server.polls(task.id))

    await vt.gather(*(worker() for _ in range(20)))
    return polls


async def test_a_binding_budget_costs_fewer_polls_per_task() -> None:
    idle = await _bound_run(binding=False)
    bound = await _bound_run(binding=True)

    assert sum(bound) < sum(idle)
    assert statistics.mean(bound[20:]) <= 1.05


async def test_a_first_poll_is_put_off_when_the_budget_binds_and_others_taught_more() -> None:
    vt = VirtualTime()
    server = FakeServer(vt)
    bound = [False]
    poller = make_poller(vt, server.fetch, budget_binding=lambda: bound[0])
    await run_sequentially(poller, server, [1.0] * 10)  # learned: done by about 1 s
    bound[0] = True
    start = vt.now

    async def wait_at(delay: float, duration: float) -> Task:
        await vt.sleep(delay)
        return await poller.wait(server.submit(duration), submitted_at=vt.now)

    # The first task is slower than learned; the second, submitted just after it and planned
    # before its probe missed, looks later than it was planned at submission.
    first, second = await vt.gather(wait_at(0.0, 3.0), wait_at(0.3, 3.0))

    first_offset = server.fetch_times(first.id)[0] - start
    second_offset = server.fetch_times(second.id)[0] - (start + 0.3)
    assert first_offset < 1.7  # the learned 98% point, about 1.5 s
    assert second_offset > first_offset * 1.1  # beyond the ±5% probe jitter: put off


# --- a plentiful budget: poll for latency ----------------------------------------------------


@pytest.mark.parametrize(("left", "noticed_within"), [(None, 2.0), (0, 2.0), (100, 0.3)])
async def test_with_budget_to_spare_a_task_of_an_unknown_name_is_noticed_soon(
    left: int | None, noticed_within: float
) -> None:
    # A first task of a new name, 3.2 s long: with nothing learned, polls back off from 1 s
    # (1, 2.5, 4.75: noticed 1.55 s late). With plenty of budget left (two for each task
    # awaited), the gap stays at a quarter of the first, for latency.
    vt = VirtualTime()
    server = FakeServer(vt)
    poller = make_poller(vt, server.fetch, budget_left=lambda: left)
    task = server.submit(3.2)

    await poller.wait(task, submitted_at=vt.now)

    late = vt.now - server.finish_time(task.id)
    assert late < noticed_within
    if left == 100:
        assert server.polls(task.id) <= 1 + (3.2 - 1.0) / 0.2 + 1
    else:
        assert late > 1.0
