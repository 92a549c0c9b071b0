"""The rate limiter's first-response probe is bounded (issue 12, point 1), against the simulator.

The first request goes alone so that a crowd does not overrun a limit nobody knows yet; but if its
answer is slow, the others must not wait for it. Ordering, not timing, is asserted here: the
benchmark scenario ``probe`` measures how soon the other results arrive.
"""

from __future__ import annotations

from typing import Any

import katapult_async as ka
from katapult_async.testing import FaultKind, KatapultSimulator


async def _run(sim: KatapultSimulator, ids: list[str], **options: Any) -> list[str]:
    """Bulk-update ``ids`` (all at once); the interface ids in the order their results came."""
    order: list[str] = []
    async with ka.KatapultClient(sim.token, base_url=sim.base_url, **options) as client:
        async for result in client.bulk_update_speed_profiles(
            ((i, "1gbps") for i in ids), concurrency=len(ids), wait=True
        ):
            assert result.outcome is ka.Outcome.COMPLETED, result
            order.append(result.interface_id)
    return order


def _slow_interface(sim: KatapultSimulator) -> str:
    (slow,) = [r for r in sim.requests if r.fault is FaultKind.SLOW_RESPONSE]
    assert slow.method == "PATCH"
    assert slow.at == min(r.at for r in sim.requests)  # the probe: the first request of the run
    interface: str = slow.body["virtual_machine_network_interface"]["id"]
    return interface


async def test_a_slow_first_patch_does_not_hold_the_others() -> None:
    async with KatapultSimulator(task_duration=0.0, rate_limit=1000, rate_limit_window=60.0) as sim:
        ids = sim.add_interfaces(21)
        sim.inject(FaultKind.SLOW_RESPONSE, times=1, method="PATCH", delay=4.0)
        order = await _run(sim, ids)
        slow = _slow_interface(sim)
    assert sorted(order) == sorted(ids)
    assert order[-1] == slow  # the 20 others all came before the slow one


async def test_without_a_probe_timeout_the_first_answer_is_awaited() -> None:
    async with KatapultSimulator(task_duration=0.0, rate_limit=1000, rate_limit_window=60.0) as sim:
        ids = sim.add_interfaces(6)
        sim.inject(FaultKind.SLOW_RESPONSE, times=1, method="PATCH", delay=0.5)
        await _run(sim, ids, probe_timeout=None)
        _slow_interface(sim)
        (slow,) = [r for r in sim.requests if r.fault is FaultKind.SLOW_RESPONSE]
        others = [r for r in sim.requests if r is not slow]
    # Nothing else reached the server before the slow answer was sent.
    assert min(r.at for r in others) >= slow.at + 0.5


def test_probe_timeout_is_validated() -> None:
    for bad in (0.0, -1.0, float("inf")):
        try:
            ka.ClientConfig(probe_timeout=bad)
        except ka.ConfigurationError:
            continue
        raise AssertionError(f"probe_timeout={bad} accepted")
    assert ka.ClientConfig().probe_timeout == 0.3
