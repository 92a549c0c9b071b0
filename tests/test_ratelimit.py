"""Tests for the client-side rate limiter, in virtual time.

:class:`VirtualTime` supplies the limiter's ``clock`` and ``sleep``: time stands still while any
task can run, then jumps to the earliest pending sleep. Every timing assertion is about virtual
time, so the tests take milliseconds and never depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable

import attrs
import pytest

from katapult_async._ratelimit import PRIORITY_POLL, RateLimiter, RateLimitState

TOLERANCE = 1e-9


class VirtualTime:
    """A virtual clock and sleep for code under test that takes ``clock`` and ``sleep``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._activity = 0  # clock reads and sleeps: a task that does neither is idle
        self._driving = False

    def clock(self) -> float:
        self._activity += 1
        return self.now

    async def sleep(self, delay: float) -> None:
        assert delay >= 0, delay
        # Nothing would ever wake a sleep taken while no one drives the clock: fail, don't hang.
        assert self._driving, "sleep() outside settle() / advance_to()"
        self.sleeps.append(delay)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + delay, next(self._order), future))
        self._activity += 1
        await future

    @property
    def pending(self) -> int:
        """How many sleeps are in progress."""
        return sum(not future.done() for _, _, future in self._timers)

    async def settle(self) -> None:
        """Lets every runnable task run until all of them wait (for a sleep or for each other)."""
        self._driving = True
        try:
            idle = 0
            while idle < 5:
                before = self._activity
                await asyncio.sleep(0)
                idle = idle + 1 if self._activity == before else 0
        finally:
            self._driving = False

    async def advance_to(self, until: float) -> None:
        """Runs the tasks, waking sleepers in time order, until virtual time ``until``."""
        await self.settle()
        while self._timers and self._timers[0][0] <= until:
            self.now = max(self.now, self._timers[0][0])
            while self._timers and self._timers[0][0] <= self.now:
                _, _, future = heapq.heappop(self._timers)
                if not future.done():
                    future.set_result(None)
            await self.settle()
        self.now = max(self.now, until)
        await self.settle()


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


def make_limiter(vt: VirtualTime, limit: int | None = None, window: float = 2.0) -> RateLimiter:
    """A limiter with the margins these tests were written for: 3 % reserve, ``window + 2.5 %``,
    pacing the starts evenly (``tests/test_budget.py`` has burst pacing's own scenarios)."""
    return RateLimiter(
        limit,
        window,
        pacing="smooth",
        reserve=0.03,
        time_margin=max(0.05, 0.02 * window),
        clock=vt.clock,
        sleep=vt.sleep,
        probe=False,
    )


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def hammer(
    limiter: RateLimiter,
    vt: VirtualTime,
    *,
    callers: int,
    until: float,
    latency: float | None = 0.01,
    on_start: Callable[[], None] | None = None,
) -> list[float]:
    """Has ``callers`` tasks acquire in a loop until ``until``; returns the start times."""
    starts: list[float] = []

    async def caller() -> None:
        while True:
            await limiter.acquire()
            starts.append(vt.now)
            if on_start is not None:
                on_start()
            if latency is not None:
                await vt.sleep(latency)

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await vt.advance_to(until)
    await stop(tasks)
    return starts


def max_in_any_interval(times: list[float], length: float) -> int:
    """The most ``times`` in any closed interval ``[t, t + length]``."""
    ordered = sorted(times)
    best = left = 0
    for right, end in enumerate(ordered):
        while ordered[left] < end - length - TOLERANCE:
            left += 1
        best = max(best, right - left + 1)
    return best


# --- no limit --------------------------------------------------------------------------------


async def test_no_limit_never_waits(vt: VirtualTime) -> None:
    limiter = make_limiter(vt)
    for _ in range(10_000):
        await limiter.acquire()
    assert vt.sleeps == []
    assert vt.now == 0.0
    state = limiter.snapshot()
    assert state.limit is None
    assert state.source is None
    assert state.in_window == 10_000


async def test_starts_age_out_of_the_window(vt: VirtualTime) -> None:
    limiter = make_limiter(vt)
    for _ in range(100):
        await limiter.acquire()
    vt.now = 2.0
    assert limiter.snapshot().in_window == 0


# --- configured limit ------------------------------------------------------------------------


async def test_configured_limit_is_never_exceeded_and_nearly_reached(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 100, 2.0)
    starts = await hammer(limiter, vt, callers=50, until=10.0)
    assert max_in_any_interval(starts, 2.0) <= 100
    assert len(starts) / 10.0 >= 0.9 * 100 / 2.0


async def test_throughput_for_100_per_2s_with_100_callers(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 100, 2.0)
    starts = await hammer(limiter, vt, callers=100, until=20.0, latency=None)
    assert max_in_any_interval(starts, 2.0) <= 97
    assert len(starts) / 20.0 >= 0.93 * 100 / 2.0


async def test_starts_are_spread_not_burst(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 100, 2.0)
    starts = await hammer(limiter, vt, callers=100, until=4.0)
    assert max_in_any_interval(starts, 0.2) <= 11
    gaps = [b - a for a, b in itertools.pairwise(sorted(starts))]
    assert min(gaps) >= 2.05 / 97 - TOLERANCE


async def test_only_the_head_of_the_queue_sleeps(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 10, 1.0)
    await limiter.acquire()
    tasks = [asyncio.create_task(limiter.acquire()) for _ in range(20)]
    await vt.settle()
    assert vt.pending == 1
    await stop(tasks)


# --- learning the limit ----------------------------------------------------------------------


async def test_limit_learned_from_headers_paces_at_once(vt: VirtualTime) -> None:
    limiter = make_limiter(vt)
    for _ in range(5):
        await limiter.acquire()
    limiter.observe(permitted=10, remaining=5)
    assert (limiter.limit, limiter.snapshot().source) == (10, "headers")
    starts = [0.0] * 5 + await hammer(limiter, vt, callers=10, until=10.0)
    assert max_in_any_interval(starts, 2.0) <= 10
    assert len(starts) >= 0.85 * 10 / 2.0 * 10.0


async def test_limit_learned_from_429(vt: VirtualTime) -> None:
    limiter = make_limiter(vt)
    for _ in range(3):
        await limiter.acquire()
    limiter.observe_rate_limited(total_permitted=100, retry_after=None)
    state = limiter.snapshot()
    assert (state.limit, state.source, state.rate_limited) == (100, "429", 1)
    # The server's window is full (100 plus the rejected request), so nothing may start until
    # our own starts at t=0 have aged out.
    assert state.paused_until_in == pytest.approx(2.05)


async def test_later_limits_replace_earlier_ones(vt: VirtualTime) -> None:
    limiter = make_limiter(vt)
    limiter.observe_rate_limited(total_permitted=100, retry_after=None)
    assert (limiter.limit, limiter.snapshot().source) == (100, "429")
    limiter.observe_rate_limited(total_permitted=90, retry_after=None)
    assert limiter.limit == 90
    limiter.observe(permitted=120, remaining=None)
    assert (limiter.limit, limiter.snapshot().source) == (120, "headers")
    # Once headers name the limit, a 429 body does not override them.
    limiter.observe_rate_limited(total_permitted=150, retry_after=None)
    assert (limiter.limit, limiter.snapshot().source) == (120, "headers")
    limiter.observe(permitted=80, remaining=None)
    assert limiter.limit == 80
    limiter.observe(permitted=None, remaining=None)
    limiter.observe(permitted=0, remaining=None)
    assert limiter.limit == 80


async def test_configured_limit_is_lowered_but_never_raised(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 50)
    limiter.observe(permitted=100, remaining=None)
    assert (limiter.limit, limiter.snapshot().source) == (50, "configured")
    limiter.observe(permitted=40, remaining=None)
    assert (limiter.limit, limiter.snapshot().source) == (40, "headers")
    limiter.observe(permitted=1000, remaining=None)
    assert (limiter.limit, limiter.snapshot().source) == (50, "configured")
    limiter.observe_rate_limited(total_permitted=1000, retry_after=0.0)
    assert (limiter.limit, limiter.snapshot().source) == (50, "configured")


async def test_configured_limit_lowered_by_a_429_without_headers(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 500)
    limiter.observe_rate_limited(total_permitted=300, retry_after=0.0)
    assert (limiter.limit, limiter.snapshot().source) == (300, "429")


async def test_raised_limit_paces_faster(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, None, 2.0)
    limiter.observe(permitted=100, remaining=None)
    first = await hammer(limiter, vt, callers=20, until=4.0)
    limiter.observe(permitted=200, remaining=None)
    second = [t for t in await hammer(limiter, vt, callers=20, until=8.0) if t > 6.0]
    assert len(first) / 4.0 < 50
    assert len(second) / 2.0 > 90
    assert max_in_any_interval(second, 2.0) <= 200


# --- 429s ------------------------------------------------------------------------------------


async def test_429_pauses_every_caller_and_counts(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 10, 1.0)
    starts: list[float] = []

    async def caller() -> None:
        while True:
            await limiter.acquire()
            starts.append(vt.now)

    tasks = [asyncio.create_task(caller()) for _ in range(20)]
    await vt.advance_to(0.5)
    before = len(starts)
    limiter.observe_rate_limited(total_permitted=None, retry_after=None)
    state = limiter.snapshot()
    assert state.rate_limited == limiter.rate_limited_count == 1
    pause_end = 0.5 + state.paused_until_in
    # Five starts at 0, 1.05/9, ... and 6 phantoms at 0.5 fill the log to limit + 1; a start is
    # allowed again once the third of ours (t = 2 * 1.05/9) is 1.05 s old.
    assert pause_end == pytest.approx(2 * 1.05 / 9 + 1.05)
    await vt.settle()
    assert vt.pending == 1  # still only the head of the queue sleeps: no thundering herd
    await vt.advance_to(4.0)
    await stop(tasks)
    after = starts[before:]
    assert after[0] == pytest.approx(pause_end)
    assert all(t >= pause_end - TOLERANCE for t in after)
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert min(gaps) >= 1.05 / 9 - TOLERANCE


async def test_retry_after_is_honoured(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 10, 5.0)
    await limiter.acquire()
    limiter.observe_rate_limited(total_permitted=None, retry_after=3.0)
    assert limiter.snapshot().paused_until_in == 3.0
    starts = await hammer(limiter, vt, callers=5, until=5.0)
    assert starts[0] == pytest.approx(3.0)


async def test_retry_after_pauses_even_without_a_limit(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, None, 5.0)
    limiter.observe_rate_limited(total_permitted=None, retry_after=2.5)
    results: list[float] = []

    async def caller() -> None:
        await limiter.acquire()
        results.append(vt.now)

    tasks = [asyncio.create_task(caller()) for _ in range(10)]
    await vt.advance_to(3.0)
    await asyncio.gather(*tasks)
    assert results == [2.5] * 10
    assert limiter.snapshot().paused_until_in == 0.0
    await limiter.acquire()  # no limit, no pause: straight through
    assert vt.now == 3.0


@pytest.mark.parametrize("retry_after", [-1.0, math.nan, math.inf])
async def test_invalid_retry_after_is_ignored(vt: VirtualTime, retry_after: float) -> None:
    limiter = make_limiter(vt, 10, 1.0)
    limiter.observe_rate_limited(total_permitted=None, retry_after=retry_after)
    # Falls back to the log: 11 phantom starts now, so the pause lasts one window + margin.
    assert limiter.snapshot().paused_until_in == pytest.approx(1.05)


async def test_429_with_unknown_limit_waits_for_our_starts_to_age_out(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, None, 60.0)
    for now in (0.0, 10.0, 20.0):
        vt.now = now
        await limiter.acquire()
    limiter.observe_rate_limited(total_permitted=None, retry_after=None)
    state = limiter.snapshot()
    assert state.limit is None
    assert state.paused_until_in == pytest.approx(0.0 + 61.2 - 20.0)


async def test_429s_of_requests_in_flight_extend_but_do_not_escalate(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 10, 1.0)
    await limiter.acquire()
    limiter.observe_rate_limited(total_permitted=None, retry_after=None)
    assert limiter.snapshot().paused_until_in == pytest.approx(1.05)
    vt.now = 0.5
    limiter.observe_rate_limited(total_permitted=None, retry_after=None)
    assert limiter.snapshot().paused_until_in == pytest.approx(0.55)
    assert limiter.rate_limited_count == 2


async def test_repeated_429_after_a_pause_waits_a_whole_window(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 10, 1.0)  # 9 starts per 1.05 s, one every 1.05/9 s
    starts: list[float] = []

    async def caller() -> None:
        while True:
            await limiter.acquire()
            starts.append(vt.now)

    task = asyncio.create_task(caller())
    await vt.advance_to(0.95)
    assert len(starts) == 9
    limiter.observe_rate_limited(total_permitted=None, retry_after=None)
    first_end = 0.95 + limiter.snapshot().paused_until_in
    assert first_end == pytest.approx(2 * 1.05 / 9 + 1.05)
    # The 429 of a request that was in flight before the pause only confirms it.
    await vt.advance_to(1.0)
    limiter.observe_rate_limited(total_permitted=None, retry_after=None)
    assert 1.0 + limiter.snapshot().paused_until_in == pytest.approx(first_end)
    # But the request started when the pause ended is rejected as well: the server does not
    # free capacity as our log predicts (a fixed window filled by others), so wait out a window.
    await vt.advance_to(1.3)
    assert starts[-1] == pytest.approx(first_end)
    limiter.observe_rate_limited(total_permitted=None, retry_after=None)
    assert limiter.snapshot().paused_until_in == pytest.approx(1.05)
    # Long after, a 429 is a fresh start: the pause follows the log again.
    await vt.advance_to(5.0)
    limiter.observe_rate_limited(total_permitted=None, retry_after=None)
    assert 0 < limiter.snapshot().paused_until_in < 0.5
    await stop([task])
    assert limiter.rate_limited_count == 4


# --- usage by others -------------------------------------------------------------------------


async def test_remaining_reveals_foreign_usage(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 100, 2.0)
    await limiter.acquire()
    limiter.observe(permitted=100, remaining=40)  # 60 used, 1 of them ours
    assert limiter.snapshot().in_window == 60
    starts = [0.0, *await hammer(limiter, vt, callers=20, until=6.0)]
    first_window = [t for t in starts if t <= 2.0]
    assert 30 <= len(first_window) <= 97 - 59
    # The foreign starts age out like ours: full speed again afterwards.
    assert len([t for t in starts if 2.05 <= t < 4.1]) >= 95


async def test_own_requests_in_flight_are_not_counted_twice(vt: VirtualTime) -> None:
    limiter = make_limiter(vt)
    for _ in range(10):
        await limiter.acquire()
    limiter.observe(permitted=100, remaining=95)  # the server has seen 5 of our 10 so far
    assert limiter.snapshot().in_window == 10
    limiter.observe(permitted=100, remaining=90)
    assert limiter.snapshot().in_window == 10
    limiter.observe(permitted=100, remaining=80)  # 10 more than ours: someone else's
    assert limiter.snapshot().in_window == 20
    limiter.observe(permitted=100, remaining=80)  # the same news again
    limiter.observe(permitted=100, remaining=97)  # an older response, arriving late
    limiter.observe(permitted=100, remaining=None)
    assert limiter.snapshot().in_window == 20


async def test_headroom_above_a_configured_limit_is_left_to_others(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 50, 2.0)
    assert len(await hammer(limiter, vt, callers=1, until=0.4, latency=None)) == 10
    limiter.observe(permitted=100, remaining=60)  # others used 30: within the other 50
    assert limiter.snapshot().in_window == 10
    limiter.observe(permitted=100, remaining=20)  # others used 70: 20 of them eat into our 50
    assert limiter.snapshot().in_window == 30


async def test_a_stale_empty_window_holds_back_for_at_most_one_window(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 100, 2.0)
    await limiter.acquire()
    limiter.observe(permitted=100, remaining=0)
    starts = await hammer(limiter, vt, callers=5, until=3.0)
    assert starts[0] == pytest.approx(2.05)


async def test_remaining_is_ignored_while_the_limit_is_unknown(vt: VirtualTime) -> None:
    limiter = make_limiter(vt)
    limiter.observe(permitted=None, remaining=0)
    await limiter.acquire()
    assert vt.sleeps == []


# --- cancellation ----------------------------------------------------------------------------


async def test_cancelled_waiters_consume_nothing(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 1, 1.0)  # one start per 1.05 s
    await limiter.acquire()
    done_at: dict[str, float] = {}

    async def caller(name: str) -> None:
        await limiter.acquire()
        done_at[name] = vt.now

    head = asyncio.create_task(caller("head"))
    second = asyncio.create_task(caller("second"))
    queued = asyncio.create_task(caller("queued"))
    last = asyncio.create_task(caller("last"))
    await vt.advance_to(0.5)
    head.cancel()  # sleeping at the head of the queue
    queued.cancel()  # waiting behind it
    await vt.advance_to(10.0)
    await asyncio.gather(second, last)
    assert head.cancelled()
    assert queued.cancelled()
    assert done_at == pytest.approx({"second": 1.05, "last": 2.1})
    slept = len(vt.sleeps)
    await limiter.acquire()  # the queue is empty again: the fast path
    assert len(vt.sleeps) == slept


# --- priority ----------------------------------------------------------------------------------


async def test_polls_yield_to_other_requests_even_while_the_head_sleeps(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 1, 1.0)  # one start per 1.05 s
    await limiter.acquire()
    order: list[str] = []

    async def caller(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        order.append(name)

    tasks = [asyncio.create_task(caller("poll 1", PRIORITY_POLL))]
    await vt.advance_to(0.1)  # "poll 1" is the head, asleep until 1.05
    tasks.append(asyncio.create_task(caller("poll 2", PRIORITY_POLL)))
    tasks.append(asyncio.create_task(caller("patch 1", 0)))
    await vt.advance_to(0.2)
    tasks.append(asyncio.create_task(caller("patch 2", 0)))
    await vt.advance_to(10.0)
    await asyncio.gather(*tasks)
    # PATCHes first, in arrival order, then the polls in arrival order; one start per 1.05 s.
    assert order == ["patch 1", "patch 2", "poll 1", "poll 2"]
    assert limiter.snapshot().in_window == 0
    slept = len(vt.sleeps)
    await limiter.acquire(PRIORITY_POLL)  # the queue is empty again: the fast path
    assert len(vt.sleeps) == slept


async def test_a_cancelled_urgent_waiter_hands_the_queue_back(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 1, 1.0)
    await limiter.acquire()
    done_at: dict[str, float] = {}

    async def caller(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        done_at[name] = vt.now

    poll = asyncio.create_task(caller("poll", PRIORITY_POLL))
    await vt.advance_to(0.1)
    patch = asyncio.create_task(caller("patch", 0))
    await vt.advance_to(0.5)
    patch.cancel()
    await vt.advance_to(10.0)
    await poll
    assert patch.cancelled()
    assert done_at == pytest.approx({"poll": 1.05})


async def test_priorities_never_exceed_the_limit(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 20, 1.0)
    starts: list[float] = []

    async def caller(priority: int) -> None:
        while True:
            await limiter.acquire(priority)
            starts.append(vt.now)
            await vt.sleep(0.01)

    tasks = [asyncio.create_task(caller(i % 2)) for i in range(30)]
    await vt.advance_to(10.0)
    await stop(tasks)
    assert max_in_any_interval(starts, 1.0) <= 20
    assert len(starts) >= 9 * 19  # the budget is still spent


# --- snapshot, properties, arguments ----------------------------------------------------------


async def test_snapshot(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 100, 2.0)
    assert limiter.snapshot() == RateLimitState(
        limit=100,
        window=2.0,
        in_window=0,
        rate_limited=0,
        paused_until_in=0.0,
        source="configured",
        remaining=97,
        refills_in=None,
        pacing="smooth",
    )
    assert len(await hammer(limiter, vt, callers=1, until=0.05, latency=None)) == 3
    vt.now = 1.0
    limiter.observe_rate_limited(total_permitted=100, retry_after=1.5)
    state = limiter.snapshot()
    assert state == RateLimitState(
        limit=100,
        window=2.0,
        in_window=3,
        rate_limited=1,
        paused_until_in=1.5,
        source="configured",
        remaining=94,
        refills_in=pytest.approx(1.05),
        pacing="smooth",
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.limit = 5  # type: ignore[misc]
    assert (limiter.limit, limiter.window, limiter.rate_limited_count) == (100, 2.0, 1)
    assert "limit=100" in repr(limiter)


@pytest.mark.parametrize(
    ("limit", "usable"), [(1, 1), (2, 1), (10, 9), (60, 58), (100, 97), (1000, 970)]
)
async def test_safety_margin_reserve(vt: VirtualTime, limit: int, usable: int) -> None:
    limiter = RateLimiter(
        limit,
        1.0,
        safety_margin=0.03,
        time_margin=0.0,
        clock=vt.clock,
        sleep=vt.sleep,
        probe=False,
    )
    starts = await hammer(limiter, vt, callers=5, until=0.999, latency=None)
    assert len(starts) == usable


async def test_no_safety_margin(vt: VirtualTime) -> None:
    limiter = RateLimiter(
        10, 1.0, safety_margin=0.0, time_margin=0.0, clock=vt.clock, sleep=vt.sleep, probe=False
    )
    starts = await hammer(limiter, vt, callers=5, until=0.999, latency=None)
    assert len(starts) == 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"shared_margin": 1.0},
        {"probe_timeout": 0.0},
        {"probe_timeout": math.inf},
        {"window": 0.0},
        {"window": math.inf},
        {"safety_margin": 1.0},
        {"safety_margin": -0.1},
        {"time_margin": -1.0},
        {"time_margin": math.nan},
    ],
)
def test_invalid_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


# --- real time -------------------------------------------------------------------------------


async def test_default_clock_and_sleep() -> None:
    limiter = RateLimiter(10, 0.2, probe=False)  # 9 starts per 0.25 s of real time
    starts: list[float] = []

    async def caller() -> None:
        for _ in range(4):
            await limiter.acquire()
            starts.append(time.monotonic())

    await asyncio.gather(*(caller() for _ in range(4)))
    assert len(starts) == 16
    assert max_in_any_interval(starts, 0.2) <= 10


async def test_first_request_goes_alone_until_it_is_answered() -> None:
    limiter = RateLimiter()
    await limiter.acquire()
    second = asyncio.create_task(limiter.acquire())
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not second.done()
    assert not third.done()
    limiter.observe(permitted=None, remaining=None)  # answered, even without headers
    await asyncio.wait_for(asyncio.gather(second, third), 1.0)
    # The probe is over: later requests never wait for answers.
    await asyncio.wait_for(limiter.acquire(), 1.0)


async def test_a_request_that_gets_no_answer_releases_the_probe() -> None:
    limiter = RateLimiter()
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    limiter.release()
    await asyncio.wait_for(waiter, 1.0)


async def test_probe_can_be_switched_off() -> None:
    limiter = RateLimiter(probe=False)
    await asyncio.wait_for(asyncio.gather(*(limiter.acquire() for _ in range(5))), 1.0)


async def test_retry_after_is_capped_at_one_window(vt: VirtualTime) -> None:
    limiter = make_limiter(vt, 10, 1.0)
    limiter.observe_rate_limited(total_permitted=None, retry_after=3600.0)
    assert limiter.snapshot().paused_until_in == pytest.approx(1.05)


async def test_learning_and_pauses_are_logged(
    vt: VirtualTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="katapult_async")
    limiter = make_limiter(vt, None, 2.0)
    limiter.observe(permitted=100, remaining=99)
    limiter.observe_rate_limited(total_permitted=100, retry_after=None)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("katapult_async")]
    assert "rate limit: 100 requests per 2s (from headers)" in messages
    assert any(m.startswith("rate limit reached (limit 100 per 2s): pausing") for m in messages)


# --- the bounded probe --------------------------------------------------------------------------


async def test_unanswered_probe_lets_others_start_gradually(vt: VirtualTime) -> None:
    limiter = RateLimiter(None, 60.0, clock=vt.clock, sleep=vt.sleep, probe_timeout=0.3)
    started: list[float] = []

    async def caller() -> None:
        await limiter.acquire()
        started.append(vt.now)

    tasks = [asyncio.create_task(caller()) for _ in range(20)]
    await vt.advance_to(1.0)
    # 1 at once, 1 more at 0.3 s, 2 at 0.6 s, 4 at 0.9 s: in flight doubles per timeout
    assert started == pytest.approx([0.0, 0.3, 0.6, 0.6, 0.9, 0.9, 0.9, 0.9])
    limiter.observe(permitted=None, remaining=None)  # an answer: the probe is over
    await vt.advance_to(1.0)
    assert len(started) == 20
    await stop(tasks)


async def test_an_answer_before_the_probe_timeout_ends_the_probe(vt: VirtualTime) -> None:
    limiter = RateLimiter(None, 60.0, clock=vt.clock, sleep=vt.sleep, probe_timeout=0.3)
    await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(5)]
    await vt.advance_to(0.1)
    assert not any(w.done() for w in waiters)
    limiter.observe(permitted=None, remaining=None)
    await vt.advance_to(0.1)
    assert all(w.done() for w in waiters)


async def test_probe_timeout_none_waits_for_the_answer(vt: VirtualTime) -> None:
    limiter = RateLimiter(None, 60.0, clock=vt.clock, sleep=vt.sleep, probe_timeout=None)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await vt.advance_to(100.0)
    assert not waiter.done()
    limiter.release()
    await vt.advance_to(100.0)
    assert waiter.done()
