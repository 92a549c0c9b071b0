"""The limiter against a model server, in virtual time: never more than the limit in any window.

:class:`ModelServer` counts each request when it arrives (its start plus a latency) in fixed
windows of a phase the client is not told, or in a sliding window, and answers with the
``X-Ratelimit-*`` headers after the latency, optionally with extra random delays so that answers
arrive stale and out of order. Every assertion is about virtual time; nothing depends on the
machine's speed.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable

import pytest

from katapult_async._budget import SHARED_SPANS, Budget, Pacing
from katapult_async._ratelimit import RateLimiter
from tests.test_ratelimit import VirtualTime, max_in_any_interval, stop


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


class ModelServer:
    """Counts arrivals per token like the simulator; ``limit`` may change mid-run."""

    def __init__(self, vt: VirtualTime, limit: int, window: float, *, phase: float | None) -> None:
        self.vt = vt
        self.limit = limit
        self.window = window
        self.phase = phase  # None: sliding; else fixed windows starting at phase + k * window
        self.arrivals: list[float] = []
        self.refused: list[float] = []  # arrivals answered with a 429
        self.rejected = 0

    def count(self, at: float) -> int:
        """Requests in the server's window that holds ``at``, after the one arriving at ``at``."""
        self.arrivals.append(at)
        if self.phase is None:
            return sum(1 for t in self.arrivals if at - self.window < t <= at)
        index = math.floor((at - self.phase) / self.window)
        start = self.phase + index * self.window
        return sum(1 for t in self.arrivals if start <= t < start + self.window)

    def max_in_window(self, since: float = -math.inf, *, accepted: bool = False) -> int:
        """The most arrivals in any window the server counts (only those it accepted)."""
        refused = set(self.refused) if accepted else set()
        times = [t for t in self.arrivals if t >= since and t not in refused]
        if self.phase is None:
            return max_in_any_interval(times, self.window - 1e-9) if times else 0
        counts: dict[int, int] = {}
        for t in times:
            index = math.floor((t - self.phase) / self.window)
            counts[index] = counts.get(index, 0) + 1
        return max(counts.values(), default=0)

    def run(
        self,
        limiter: RateLimiter,
        *,
        callers: int,
        latency: float = 0.004,
        headers: bool = True,
        jitter: Callable[[], float] = lambda: 0.0,
    ) -> list[asyncio.Task[None]]:
        """Start ``callers`` tasks that send requests through ``limiter`` for ever."""

        async def caller() -> None:
            while True:
                started = await limiter.acquire()
                await self.vt.sleep(latency / 2)
                count = self.count(self.vt.now)
                limit = self.limit
                await self.vt.sleep(latency / 2 + jitter())
                if count > limit:
                    self.rejected += 1
                    self.refused.append(self.arrivals[-1])
                    limiter.observe_rate_limited(total_permitted=limit, retry_after=None)
                elif headers:
                    limiter.observe(
                        permitted=limit, remaining=max(0, limit - count), started=started
                    )
                else:
                    limiter.observe(permitted=None, remaining=None)
                limiter.release(started)

        return [asyncio.create_task(caller()) for _ in range(callers)]


@pytest.fixture(params=["burst", "smooth"])
def pacing(request: pytest.FixtureRequest) -> Pacing:
    """Every virtual-time scenario runs with both pacings."""
    value: Pacing = request.param
    return value


_PACING: list[Pacing] = ["burst"]


@pytest.fixture(autouse=True)
def _use_pacing(request: pytest.FixtureRequest) -> None:
    if "pacing" in request.fixturenames:
        _PACING[0] = request.getfixturevalue("pacing")


def new_limiter(vt: VirtualTime, window: float = 2.0) -> RateLimiter:
    return RateLimiter(None, window, pacing=_PACING[0], clock=vt.clock, sleep=vt.sleep)


@pytest.mark.parametrize("phase", [None, 0.0, 0.37, 1.41, 1.99])
async def test_one_process_never_exceeds_the_limit_and_nearly_reaches_it(
    pacing: Pacing, vt: VirtualTime, phase: float | None
) -> None:
    server = ModelServer(vt, 100, 2.0, phase=phase)
    tasks = server.run(new_limiter(vt), callers=50)
    await vt.advance_to(20.0)
    await stop(tasks)
    assert server.rejected == 0
    assert server.max_in_window() <= 100
    # the steady rate is 99 per 2.02 s: 98 % of the limit, after the first window
    assert len([t for t in server.arrivals if t >= 2.0]) >= 0.97 * 50 * 18


@pytest.mark.parametrize("phase", [None, 0.6])
async def test_a_second_process_appearing_mid_run(
    pacing: Pacing, vt: VirtualTime, phase: float | None
) -> None:
    server = ModelServer(vt, 100, 2.0, phase=phase)
    tasks = server.run(new_limiter(vt), callers=50)
    await vt.advance_to(5.0)
    tasks += server.run(new_limiter(vt), callers=50)
    await vt.advance_to(25.0)
    await stop(tasks)
    if pacing == "smooth":
        assert server.rejected == 0
        assert server.max_in_window() <= 100
    else:
        assert server.max_in_window(accepted=True) <= 100
        # Burst: the first process spends each window whole while it sees no one else; the
        # newcomer's first request of a window can find it spent (one 429 per window at most,
        # and never a request over the limit answered). reserve= leaves it room.
        assert server.rejected <= 20 / 2 + 2
    # together they still use most of the budget once the second one has settled in
    assert len([t for t in server.arrivals if t >= 9.0]) >= 0.9 * 50 * 16


@pytest.mark.parametrize("phase", [None, 0.25])
async def test_a_limit_lowered_mid_run(
    pacing: Pacing, vt: VirtualTime, phase: float | None
) -> None:
    server = ModelServer(vt, 100, 2.0, phase=phase)
    tasks = server.run(new_limiter(vt), callers=50)
    await vt.advance_to(6.0)
    server.limit = 60
    await vt.advance_to(20.0)
    await stop(tasks)
    # the first answers carrying the new limit may find its window already full: a few 429s at
    # most, then never again, and every window that began after the change holds at most 60
    assert server.rejected <= 3
    assert server.max_in_window(since=6.0 + 2.1) <= 60


@pytest.mark.parametrize("phase", [None, 1.1])
async def test_stale_and_out_of_order_headers(
    pacing: Pacing, vt: VirtualTime, phase: float | None
) -> None:
    rng = random.Random(7)
    server = ModelServer(vt, 100, 2.0, phase=phase)
    tasks = server.run(new_limiter(vt), callers=50, jitter=lambda: rng.expovariate(1 / 0.05))
    await vt.advance_to(20.0)
    await stop(tasks)
    assert server.rejected == 0
    assert server.max_in_window() <= 100


@pytest.mark.parametrize("phase", [None, 0.6])
async def test_the_other_process_stopping_frees_its_share(
    pacing: Pacing, vt: VirtualTime, phase: float | None
) -> None:
    server = ModelServer(vt, 100, 2.0, phase=phase)
    staying = server.run(new_limiter(vt), callers=25)
    leaving = server.run(new_limiter(vt), callers=25)
    await vt.advance_to(10.0)
    await stop(leaving)
    # burst pacing goes on sharing for a few spans after the last sign of the other
    settled = 12.1 if pacing == "smooth" else 10.0 + (SHARED_SPANS + 1) * 2.02
    await vt.advance_to(settled + 8.2)
    await stop(staying)
    assert server.rejected == 0
    assert server.max_in_window() <= 100
    # once the leaver's requests have aged out, the one left has the whole budget: 50 a second
    # spread evenly, or whole windows of 100 in bursts (three in any 8 s)
    arrived = len([t for t in server.arrivals if settled <= t < settled + 8.0])
    assert arrived >= (0.95 * 50 * 8.0 if pacing == "smooth" else 0.98 * 100 * 3)


async def test_two_processes_started_together(pacing: Pacing, vt: VirtualTime) -> None:
    server = ModelServer(vt, 100, 2.0, phase=0.9)
    tasks = server.run(new_limiter(vt), callers=25) + server.run(new_limiter(vt), callers=25)
    await vt.advance_to(20.0)
    await stop(tasks)
    assert server.rejected == 0
    assert server.max_in_window() <= 100


@pytest.mark.parametrize("jitter", [0.0, 0.006])
@pytest.mark.parametrize("phase", [None, 0.0, 0.08, 0.7])
async def test_two_processes_at_a_small_limit(
    pacing: Pacing, vt: VirtualTime, phase: float | None, jitter: float
) -> None:
    # 20 per second: each process's reserve alone is 1 request, fewer than the other's requests
    # it has not seen yet at any moment. (phase 0.08: a window turns over early in the first
    # burst, by less than a quarter of the limit.)
    rng = random.Random(3)
    server = ModelServer(vt, 20, 1.0, phase=phase)
    tasks = []
    for _ in range(2):
        limiter = new_limiter(vt, window=1.0)
        tasks += server.run(limiter, callers=15, jitter=lambda: rng.uniform(0, jitter))
    await vt.advance_to(12.0)
    await stop(tasks)
    assert server.rejected == 0
    assert server.max_in_window() <= 20
    assert len([t for t in server.arrivals if t >= 2.0]) >= 0.85 * 20 * 10


async def test_fixed_windows_with_jittery_answers_keep_the_pace(
    pacing: Pacing, vt: VirtualTime
) -> None:
    # Up to 30 ms of jitter: answers from the end of a window arrive after the first of the
    # next. Read as the new window's count, one of them would be a window of the others' usage.
    rng = random.Random(1)
    server = ModelServer(vt, 300, 2.0, phase=0.7)
    limiter = new_limiter(vt, window=2.0)
    tasks = server.run(limiter, callers=50, latency=0.002, jitter=lambda: rng.uniform(0, 0.03))
    await vt.advance_to(16.0)
    await stop(tasks)
    assert server.rejected == 0
    assert server.max_in_window() <= 300
    # (burst: answers 30 ms out of order make a few of ours look like others' for a while)
    share = 0.9 if pacing == "smooth" else 0.8
    assert len([t for t in server.arrivals if t >= 4.0]) >= share * 300 * 6


# --- the pure model ---------------------------------------------------------------------------


def test_reserve_alone_and_shared() -> None:
    budget = Budget(100, 2.0, safety_margin=0.01, shared_margin=0.03, time_margin=0.02)
    assert budget.usable(0.0) == 99
    budget.record(0.0)
    budget.observe_remaining(90, 0.1)  # 10 counted, 1 of them ours: others use the token
    assert len(budget.starts) == 10
    assert budget.usable(0.1) == 97
    assert budget.usable(0.1 + 2.02) == 99  # no news of others for a span: alone again
    budget.observe_remaining(95, 0.2)  # an older answer: changes nothing
    assert len(budget.starts) == 10


@pytest.mark.parametrize(("limit", "alone", "shared"), [(1, 1, 1), (2, 1, 1), (100, 99, 97)])
def test_reserve_sizes(limit: int, alone: int, shared: int) -> None:
    budget = Budget(limit, 60.0, safety_margin=0.01, shared_margin=0.03, time_margin=0.6)
    assert budget.usable(0.0) == alone
    budget.shared_until = 1.0
    assert budget.usable(0.0) == shared


def test_default_margins() -> None:
    limiter = RateLimiter(100, 2.0)
    assert limiter._budget.span == pytest.approx(2.2)  # burst: a tenth of the window at first
    assert RateLimiter(100, 2.0, pacing="smooth")._budget.span == pytest.approx(2.02)
    assert limiter._budget.usable(0.0) == 100  # burst: no reserve while alone
    assert RateLimiter(100, 2.0, pacing="smooth")._budget.usable(0.0) == 99
    assert RateLimiter(100, 2.0, reserve=0.05)._budget.usable(0.0) == 95
    assert RateLimiter(1000, 60.0, pacing="smooth")._budget.span == pytest.approx(60.6)


def _budget_after_a_window_of_ours(outgoing: int) -> Budget:
    """60 of our starts in one fixed window, the last ``outgoing`` still unanswered at its end."""
    budget = Budget(100, 2.0, safety_margin=0.01, shared_margin=0.03, time_margin=0.02)
    for i in range(60):
        budget.record(i * 0.033)
    for _ in range(60 - outgoing):
        budget.end()
    budget.observe_remaining(100 - 60 + outgoing, 1.9)
    assert len(budget.starts) == 60
    return budget


def test_a_turnover_with_our_requests_outgoing_adds_no_phantom() -> None:
    budget = _budget_after_a_window_of_ours(outgoing=3)
    # The window turns over at 2.0: the three outgoing requests reach the server after it, and
    # their answers come in one by one (each still outgoing while its answer is observed).
    for counted in (1, 2, 3):
        budget.observe_remaining(100 - counted, 2.0 + counted * 0.001)
        budget.end()
    assert len(budget.starts) == 60  # nothing counted as others' usage
    assert budget.usable(2.01) == 99


def test_after_a_turnover_the_usage_of_others_still_shows() -> None:
    budget = _budget_after_a_window_of_ours(outgoing=1)
    budget.observe_remaining(99, 2.001)  # the turnover: only our outgoing request counted
    budget.end()
    budget.observe_remaining(79, 2.3)  # 21 counted, none of them started by us since
    assert list(budget.starts).count(2.3) == 20  # phantoms, stamped now
    assert budget.usable(2.3) == 97  # others use the token: the shared reserve


def test_a_sliding_count_falling_after_a_silence_is_not_a_turnover() -> None:
    budget = Budget(100, 2.0, safety_margin=0.01, shared_margin=0.03, time_margin=0.02)
    for i in range(48):  # ours, 0 to 1.88 s
        budget.record(i * 0.04)
        budget.end()
    budget.observe_remaining(3, 1.9)  # 97 counted: the other process used 49
    assert list(budget.starts).count(1.9) == 49
    # The other process stops; a second later the sliding count has fallen by 42 as its
    # requests aged out, which the log (26 of ours and the 49 phantoms) already accounts for.
    budget.observe_remaining(45, 2.9)
    assert list(budget.starts).count(2.9) == 0  # not the whole count taken for the others'
    assert budget.ready_at(2.9) <= 2.9 + 2.02 / 97


def test_the_time_margin_is_learned_from_round_trips() -> None:
    budget = Budget(
        100, 2.0, safety_margin=0.01, shared_margin=0.03, time_margin=0.02, learn_margin=True
    )
    for i in range(15):
        budget.record(i * 0.1)
        budget.end(i * 0.1, i * 0.1 + 0.004)
    assert budget.span == pytest.approx(2.02)  # not yet: 15 round trips are too few
    budget.record(1.5)
    budget.end(1.5, 1.504)
    assert budget.span == pytest.approx(2.008)  # twice the longest round trip
    budget.record(1.6)
    budget.end(1.6, 1.9)  # a slow one: the margin never grows past where it started
    assert budget.span == pytest.approx(2.02)
    budget.record(2.0)
    budget.end(2.0, 2.0001)
    assert budget.span == pytest.approx(2.02)  # the slow one is still among the recent


def test_a_given_time_margin_is_kept(vt: VirtualTime) -> None:
    limiter = RateLimiter(None, 2.0, time_margin=0.02, clock=vt.clock, sleep=vt.sleep)
    for _ in range(100):
        limiter.release(vt.now)
    assert limiter._budget.span == pytest.approx(2.02)
    learned = new_limiter(vt)
    for _ in range(100):
        learned.release(vt.now)
    assert learned._budget.span == pytest.approx(2.005)  # instant answers: the 5 ms floor


@pytest.mark.parametrize("phase", [None, 0.0, 0.37, 1.99])
async def test_a_learned_margin_still_never_exceeds_the_limit(
    pacing: Pacing, vt: VirtualTime, phase: float | None
) -> None:
    server = ModelServer(vt, 100, 2.0, phase=phase)
    limiter = new_limiter(vt)
    tasks = server.run(limiter, callers=50, latency=0.002)
    await vt.advance_to(20.0)
    await stop(tasks)
    assert limiter._budget.span == pytest.approx(2.005)
    assert server.rejected == 0
    assert server.max_in_window() <= 100
    assert len([t for t in server.arrivals if t >= 2.0]) >= 0.985 * 50 * 18


def test_a_phantom_a_window_old_no_longer_hides_new_requests_of_others() -> None:
    budget = Budget(100, 2.0, safety_margin=0.01, shared_margin=0.03, time_margin=0.02)
    budget.record(0.0)
    budget.observe_remaining(89, 0.1, started=0.0)  # 11 counted: 10 are the others'
    budget.end()
    assert list(budget.starts).count(0.1) == 10
    # Two seconds on, the others' first ten requests have aged out at the server and ten new
    # ones are counted. The phantoms of the first ten are still in the log (until 2.12), but
    # they stand for nothing the server counts now: the ten new ones get phantoms of their own.
    budget.record(2.105)
    budget.observe_remaining(89, 2.11, started=2.105)
    budget.end()
    assert list(budget.starts).count(2.11) == 10
    assert budget.in_window(2.2) == 11  # the old phantoms gone, the new ones held


def test_a_small_fixed_window_turnover_is_seen() -> None:
    budget = Budget(100, 2.0, safety_margin=0.01, shared_margin=0.03, time_margin=0.02)
    for i in range(10):
        budget.record(i * 0.05)
        budget.observe_remaining(100 - (i + 1), i * 0.05 + 0.002, started=i * 0.05)
        budget.end()
    # The window turns over at 0.5: the count falls from 10 to 1, less than a quarter of the
    # limit, but below the ten requests of ours it answered within the last window.
    budget.record(0.55)
    budget.observe_remaining(99, 0.552, started=0.55)
    budget.end()
    # Another process sends 5; our next answer counts 7: 2 of ours since the turnover, 5 theirs.
    budget.record(0.6)
    budget.observe_remaining(93, 0.602, started=0.6)
    budget.end()
    assert list(budget.starts).count(0.602) == 5


def test_an_answer_from_before_a_turnover_is_not_read_as_the_new_windows_count() -> None:
    budget = Budget(100, 2.0, safety_margin=0.01, shared_margin=0.03, time_margin=0.02)
    for i in range(90):
        budget.record(i * 0.02)
        if i < 89:
            budget.observe_remaining(100 - (i + 1), i * 0.02 + 0.002, started=i * 0.02)
            budget.end()
    # The window turns over at 1.8. A request sent after it is answered first: 1 counted.
    budget.record(1.81)
    budget.observe_remaining(99, 1.812, started=1.81)
    budget.end()
    # The answer of the request sent at 1.78, delayed: it still counts the old window's 90.
    budget.observe_remaining(10, 1.83, started=88 * 0.02)
    budget.end()
    assert not budget.log.phantoms  # no window's worth of "others" (they would stall us a span)
    assert budget.usable(1.83) == 99  # and not shared


# --- burst pacing: the budget, not a rate -----------------------------------------------------


async def _job(
    vt: VirtualTime,
    server: ModelServer,
    limiter: RateLimiter,
    *,
    requests: int,
    callers: int,
    jitter: float = 0.0,
) -> list[float]:
    """``requests`` requests through ``limiter`` by ``callers`` tasks; their start times. Each
    way of each request takes 2 ms and up to ``jitter`` more: they arrive and are answered out
    of order."""
    starts: list[float] = []
    left = [requests]
    rng = random.Random(5)

    async def caller() -> None:
        while left[0] > 0:
            left[0] -= 1
            started = await limiter.acquire()
            starts.append(started)
            await vt.sleep(0.002 + rng.uniform(0, jitter))
            count = server.count(vt.now)
            await vt.sleep(0.002 + rng.uniform(0, jitter))
            if count > server.limit:
                server.rejected += 1
                limiter.observe_rate_limited(total_permitted=server.limit, retry_after=None)
            else:
                limiter.observe(
                    permitted=server.limit, remaining=server.limit - count, started=started
                )
            limiter.release(started)

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    while not all(task.done() for task in tasks):
        await vt.advance_to(vt.now + 0.5)
    return starts


@pytest.mark.parametrize("phase", [None, 0.0, 13.7, 41.0])
async def test_a_job_that_fits_the_budget_goes_out_at_once(
    vt: VirtualTime, phase: float | None
) -> None:
    # 600 requests, 1,000 per minute: no reason to wait for anything but the round trips
    server = ModelServer(vt, 1000, 60.0, phase=phase)
    limiter = RateLimiter(None, 60.0, clock=vt.clock, sleep=vt.sleep)
    starts = await _job(vt, server, limiter, requests=600, callers=50)
    assert server.rejected == 0
    assert max(starts) < 0.2  # ~12 round trips of 50, after the first response
    smooth = RateLimiter(None, 60.0, pacing="smooth", clock=vt.clock, sleep=vt.sleep)
    later = await _job(
        vt, ModelServer(vt, 1000, 60.0, phase=phase), smooth, requests=600, callers=50
    )
    assert max(later) - min(later) > 30.0  # the old even spreading: 600 of 990 per 60.6 s


@pytest.mark.parametrize(
    ("phase", "jitter"),
    [(None, 0.0), (0.0, 0.0), (2.5, 0.0), (5.99, 0.0), (None, 0.02), (0.1, 0.02), (3.4, 0.02)],
)
async def test_a_bigger_job_takes_ceil_r_over_n_windows(
    vt: VirtualTime, phase: float | None, jitter: float
) -> None:
    # 400 requests at 100 per 6 s: four windows, the fourth opening 18 s (and three time
    # margins) after the first request; never more than 100 in any window the server counts.
    # Answered out of order (up to 20 ms each way), no answer reads as a window turning over
    # or as somebody else's request.
    server = ModelServer(vt, 100, 6.0, phase=phase)
    limiter = RateLimiter(None, 6.0, clock=vt.clock, sleep=vt.sleep)
    starts = await _job(vt, server, limiter, requests=400, callers=50, jitter=jitter)
    assert server.rejected == 0
    assert server.max_in_window() <= 100
    assert 18.0 <= max(starts) - min(starts) < 18.0 + 4 * (0.1 + 4 * jitter)
    assert not limiter._budget.log.phantoms


async def test_smooth_pacing_spreads_the_budget(vt: VirtualTime) -> None:
    server = ModelServer(vt, 100, 2.0, phase=None)
    limiter = RateLimiter(None, 2.0, pacing="smooth", clock=vt.clock, sleep=vt.sleep)
    starts = await _job(vt, server, limiter, requests=100, callers=50)
    assert server.rejected == 0
    # one every 2.02 / 99 s after the first answer: the 100th about 2 s after the first
    assert max(starts) - min(starts) > 1.9


def test_remaining_and_refill_in_the_snapshot(vt: VirtualTime) -> None:
    limiter = RateLimiter(10, 1.0, time_margin=0.0, clock=vt.clock, sleep=vt.sleep, probe=False)
    budget = limiter._budget
    for _ in range(4):
        budget.record(0.0)
    state = limiter.snapshot()
    assert state.remaining == 6
    assert state.refills_in == pytest.approx(1.0)
    assert state.pacing == "burst"
