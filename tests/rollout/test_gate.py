"""The rollout gate on its own: who may start when, and when it halts (no network)."""

from __future__ import annotations

import asyncio
import random

import pytest

from katapult_async import CanaryReport, Outcome, Rollout, RolloutHaltedError, UpdateResult
from katapult_async._rollout import RolloutGate


async def drive(
    gate: RolloutGate,
    outcomes: list[Outcome],
    *,
    workers: int = 8,
    seed: int = 0,
) -> tuple[list[Outcome], list[int]]:
    """Run ``outcomes`` (one per item) through the gate with ``workers`` concurrent workers.

    Returns every item's outcome (``SKIPPED`` when the gate halted before it) and the number
    in flight each time an item was let through.
    """
    rng = random.Random(seed)
    queue = list(enumerate(outcomes))
    ended: dict[int, Outcome] = {}
    seen_in_flight: list[int] = []

    async def worker() -> None:
        while queue:
            index, outcome = queue.pop(0)
            ticket = await gate.admit()
            if ticket is None or isinstance(ticket, RolloutHaltedError):
                ended[index] = Outcome.SKIPPED
                continue
            seen_in_flight.append(gate.in_flight)
            for _ in range(rng.randrange(1, 5)):
                await asyncio.sleep(0)
            ended[index] = outcome
            await gate.finish(ticket, UpdateResult(f"vmnet_{index}", None, outcome, index=index))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return [ended[i] for i in range(len(outcomes))], seen_in_flight


@pytest.mark.parametrize("k", [0, 1, 3])
@pytest.mark.parametrize("seed", range(5))
async def test_max_failures_k_ends_with_at_most_k_plus_one(k: int, seed: int) -> None:
    halts: list[RolloutHaltedError] = []
    gate = RolloutGate(Rollout(max_failures=k), on_halt=halts.append)
    ended, in_flight = await drive(gate, [Outcome.FAILED] * 50, seed=seed)
    assert ended.count(Outcome.FAILED) == k + 1
    assert ended.count(Outcome.SKIPPED) == 50 - (k + 1)
    assert max(in_flight) <= k + 1
    assert len(halts) == 1
    assert "max_failures" in halts[0].reason
    assert halts[0].failures == k + 1


async def test_failures_among_successes_still_never_overshoot() -> None:
    rng = random.Random(4)
    outcomes = [Outcome.FAILED if rng.random() < 0.3 else Outcome.COMPLETED for _ in range(200)]
    gate = RolloutGate(Rollout(max_failures=5))
    ended, _ = await drive(gate, outcomes, workers=16)
    assert ended.count(Outcome.FAILED) <= 6
    assert gate.halted is not None


async def test_no_threshold_no_halt_and_full_concurrency() -> None:
    gate = RolloutGate(Rollout())
    ended, in_flight = await drive(gate, [Outcome.ERROR] * 30, workers=8)
    assert ended.count(Outcome.ERROR) == 30
    assert max(in_flight) == 8


async def test_rate_applies_from_min_sample() -> None:
    # 3 failures in the first 10: 30 % > 20 %, but only once 10 have finished
    outcomes = [Outcome.FAILED] * 3 + [Outcome.COMPLETED] * 37
    gate = RolloutGate(Rollout(max_failure_rate=0.2, min_sample=10))
    ended, _ = await drive(gate, outcomes, workers=1)
    assert ended[:10].count(Outcome.FAILED) == 3
    assert gate.halted is not None
    assert gate.halted.finished == 10
    assert "max_failure_rate=0.2" in gate.halted.reason
    assert ended[10:] == [Outcome.SKIPPED] * 30


async def test_rate_not_exceeded_goes_on() -> None:
    outcomes = ([Outcome.COMPLETED] * 4 + [Outcome.FAILED]) * 10  # at most 20 %
    gate = RolloutGate(Rollout(max_failure_rate=0.2, min_sample=5))
    ended, _ = await drive(gate, outcomes, workers=1)
    assert Outcome.SKIPPED not in ended
    assert gate.halted is None


def test_the_halt_rule_is_exceeded_not_reached() -> None:
    gate = RolloutGate(Rollout(max_failures=2, max_failure_rate=0.29, min_sample=100))
    assert not gate.exceeds(2, 5)
    assert gate.exceeds(3, 5)
    rate = RolloutGate(Rollout(max_failure_rate=0.29, min_sample=100))
    assert not rate.exceeds(29, 100)
    assert rate.exceeds(30, 100)
    assert not rate.exceeds(99, 99)  # below min_sample


async def test_canary_first_then_the_rest() -> None:
    reports: list[CanaryReport] = []
    in_flight_at_decision: list[int] = []

    def on_canary(report: CanaryReport) -> bool:
        reports.append(report)
        in_flight_at_decision.append(gate.in_flight)
        return True

    gate = RolloutGate(Rollout(canary=3, on_canary=on_canary))
    ended, in_flight = await drive(gate, [Outcome.COMPLETED] * 20)
    assert ended == [Outcome.COMPLETED] * 20
    assert max(in_flight[:3]) <= 3
    assert len(reports) == 1
    assert len(reports[0].results) == 3
    assert in_flight_at_decision == [0]


@pytest.mark.parametrize("answer", [False])
async def test_on_canary_false_halts(answer: bool) -> None:
    async def on_canary(report: CanaryReport) -> bool:
        await asyncio.sleep(0)
        return answer

    gate = RolloutGate(Rollout(canary=2, on_canary=on_canary))
    ended, _ = await drive(gate, [Outcome.COMPLETED] * 10)
    assert ended[:2] == [Outcome.COMPLETED] * 2
    assert ended[2:] == [Outcome.SKIPPED] * 8
    assert gate.halted is not None
    assert "on_canary" in gate.halted.reason


@pytest.mark.parametrize("answer", [None, True, "anything"])
async def test_on_canary_other_answers_go_on(answer: object) -> None:
    gate = RolloutGate(Rollout(canary=2, on_canary=lambda report: answer))  # type: ignore[arg-type,return-value]
    ended, _ = await drive(gate, [Outcome.COMPLETED] * 6)
    assert Outcome.SKIPPED not in ended


async def test_a_canary_failure_halts_before_anything_else_starts() -> None:
    called: list[CanaryReport] = []
    gate = RolloutGate(Rollout(canary=3, on_canary=called.append))  # type: ignore[arg-type]
    outcomes = [Outcome.COMPLETED, Outcome.FAILED, Outcome.COMPLETED] + [Outcome.COMPLETED] * 7
    ended, _ = await drive(gate, outcomes)
    assert ended[3:] == [Outcome.SKIPPED] * 7
    assert not called
    assert gate.halted is not None
    assert "canary item vmnet_1 failed" in gate.halted.reason


@pytest.mark.parametrize(("share", "expected"), [(0.0, 0), (0.25, 5), (0.1, 2), (1.0, 20)])
def test_verify_spreads_the_share_evenly(share: float, expected: int) -> None:
    gate = RolloutGate(Rollout(verify=share))
    from katapult_async._rollout import _Ticket

    picks = [gate.verify(_Ticket(canary=False)) for _ in range(20)]
    assert sum(picks) == expected
    if expected == 5:
        assert picks == [False, False, False, True] * 5
    assert gate.verify(_Ticket(canary=True)) is (share > 0)


async def test_a_stopped_run_releases_its_waiters() -> None:
    stopped = False

    def is_stopped() -> bool:
        return stopped

    gate = RolloutGate(Rollout(canary=1), stopped=is_stopped)
    first = await gate.admit()
    waiter: asyncio.Task[object] = asyncio.ensure_future(gate.admit())
    await asyncio.sleep(0)
    assert not waiter.done()
    stopped = True
    gate.wake()
    assert await waiter is None
    assert first is not None


async def test_an_item_skipped_after_it_was_let_through_does_not_count() -> None:
    gate = RolloutGate(Rollout(max_failure_rate=0.5, min_sample=1))
    ticket = await gate.admit()
    assert not isinstance(ticket, RolloutHaltedError)
    assert ticket is not None
    await gate.finish(ticket, UpdateResult("vmnet_a", None, Outcome.SKIPPED))
    assert (gate.in_flight, gate.finished, gate.failures) == (0, 0, 0)


async def test_waiting_items_start_in_the_order_they_came() -> None:
    gate = RolloutGate(Rollout(max_failures=0))  # strict: one in flight at a time
    started: list[int] = []

    async def item(n: int) -> None:
        ticket = await gate.admit()
        assert not isinstance(ticket, RolloutHaltedError)
        assert ticket is not None
        started.append(n)
        await asyncio.sleep(0)
        await gate.finish(ticket, UpdateResult(f"vmnet_{n}", None, Outcome.COMPLETED))

    await asyncio.gather(*(item(n) for n in range(10)))
    assert started == list(range(10))


async def test_a_waiter_cancelled_after_its_turn_came_gives_its_place_back() -> None:
    gate = RolloutGate(Rollout(max_failures=0))
    first = await gate.admit()
    assert not isinstance(first, RolloutHaltedError)
    assert first is not None
    second = asyncio.ensure_future(gate.admit())
    third = asyncio.ensure_future(gate.admit())
    await asyncio.sleep(0)
    await gate.finish(first, UpdateResult("vmnet_1", None, Outcome.COMPLETED))
    second.cancel()  # its turn came (a ticket is set), but it never ran
    with pytest.raises(asyncio.CancelledError):
        await second
    ticket = await third  # the place went on to the next in line
    assert not isinstance(ticket, RolloutHaltedError)
    assert ticket is not None
    assert gate.in_flight == 1
