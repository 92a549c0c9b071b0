"""Retries and rate limiting through the HTTP choke point, against the simulator."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import katapult_async as ka
from katapult_async.testing import FaultKind, KatapultSimulator


def client_for(sim: KatapultSimulator, **kwargs: object) -> ka.KatapultClient:
    kwargs.setdefault("max_retries", 4)
    return ka.KatapultClient(sim.token, base_url=sim.base_url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kind",
    [
        FaultKind.SERVICE_UNAVAILABLE,
        FaultKind.TASK_QUEUEING_ERROR,
        FaultKind.DROP_CONNECTION,
        FaultKind.HTML_502,
    ],
)
async def test_transient_faults_are_retried(kind: FaultKind) -> None:
    async with KatapultSimulator() as sim:
        (iface,) = sim.add_interfaces(1)
        sim.inject(kind, times=2, method="PATCH")
        async with client_for(sim) as client:
            task = await client.update_speed_profile(iface, "1gbps")
        assert task.status is ka.TaskStatus.PENDING
        patches = [r for r in sim.requests if r.method == "PATCH"]
        assert len(patches) == 3
        assert [r.fault for r in patches] == [kind, kind, None]


@pytest.mark.parametrize(
    ("status_code", "make"),
    [
        (403, lambda sim: ("kat-unknown-token-123456", sim.add_interfaces(1)[0], "1gbps")),
        (404, lambda sim: (sim.token, "vmnet_missing", "1gbps")),
        (422, lambda sim: (sim.token, sim.add_interfaces(1, speed_profile="1gbps")[0], "1gbps")),
    ],
)
async def test_client_errors_are_not_retried(status_code: int, make: object) -> None:
    async with KatapultSimulator() as sim:
        token, iface, profile = make(sim)  # type: ignore[operator]
        async with ka.KatapultClient(token, base_url=sim.base_url, max_retries=5) as client:
            with pytest.raises(ka.APIError) as info:
                await client.update_speed_profile(iface, profile)
        assert info.value.status == status_code
        assert info.value.attempts == 1
        assert len([r for r in sim.requests if r.method == "PATCH"]) == 1


async def test_retries_exhausted_raise_the_last_error_with_attempts() -> None:
    async with KatapultSimulator() as sim:
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=10)
        async with client_for(sim, max_retries=2) as client:
            with pytest.raises(ka.ServiceUnavailableError) as info:
                await client.get_task("task_x")
        assert info.value.attempts == 3
        assert len(sim.requests) == 3


async def test_max_retries_zero_means_one_attempt() -> None:
    async with KatapultSimulator() as sim:
        sim.inject(FaultKind.DROP_CONNECTION, times=5)
        async with client_for(sim, max_retries=0) as client:
            with pytest.raises(ka.TransportError) as info:
                await client.get_task("task_x")
        assert info.value.attempts == 1
        assert len(sim.requests) == 1


async def test_timeouts_are_retried_as_transport_errors() -> None:
    async with KatapultSimulator() as sim:
        sim.inject(FaultKind.SLOW_RESPONSE, times=1, delay=1.0)
        (iface,) = sim.add_interfaces(1)
        async with client_for(sim, request_timeout=0.2) as client:
            iface_obj = await client.get_network_interface(iface)
        assert iface_obj.id == iface
        sim.inject(FaultKind.SLOW_RESPONSE, times=5, delay=1.0)
        async with client_for(sim, request_timeout=0.1, max_retries=1) as client:
            with pytest.raises(ka.RequestTimeoutError):
                await client.get_network_interface(iface)


async def test_lost_patch_response_then_already_assigned() -> None:
    async with KatapultSimulator() as sim:
        (iface,) = sim.add_interfaces(1, speed_profile="10gbps")
        sim.inject(FaultKind.LOST_RESPONSE, times=1, method="PATCH")
        async with client_for(sim) as client:
            with pytest.raises(ka.SpeedProfileAlreadyAssignedError) as info:
                await client.update_speed_profile(iface, "1gbps")
        assert info.value.after_lost_response
        assert info.value.attempts == 2
        assert sim.interfaces[iface].speed_profile_id == sim.profile_by_permalink("1gbps").id


async def test_limit_learned_from_headers_before_any_429() -> None:
    async with KatapultSimulator(rate_limit=10, rate_limit_window=1.0) as sim:
        async with client_for(sim, rate_limit_window=1.0) as client:
            assert client.rate_limit.limit is None
            await client.list_speed_profiles(sub_domain=sim.organization.sub_domain)
            assert client.rate_limit.limit == 10
            ids = sim.add_interfaces(25)
            await asyncio.gather(*(client.get_network_interface(i) for i in ids))
            assert client.rate_limit.rate_limited == 0
        assert sim.stats.rate_limited == 0


async def test_limit_learned_from_a_429_and_then_held() -> None:
    async with KatapultSimulator(
        rate_limit=8, rate_limit_window=1.0, rate_limit_headers=False
    ) as sim:
        ids = sim.add_interfaces(1)
        async with client_for(sim, rate_limit_window=1.0, max_retries=8) as client:
            # A first crowd goes out before anything is known: 8 pass, then 429s teach the limit.
            await asyncio.gather(*(client.get_network_interface(ids[0]) for _ in range(20)))
            assert client.rate_limit.limit == 8
            first_wave = len(sim.requests)
            # From then on the limit is held: three more windows' worth, not one 429.
            await asyncio.gather(*(client.get_network_interface(ids[0]) for _ in range(20)))
        statuses = [r.status for r in sim.requests]
        assert 1 <= statuses[:first_wave].count(429) <= 12
        assert 429 not in statuses[first_wave:]


async def test_upfront_limit_gives_zero_429s() -> None:
    async with KatapultSimulator(
        rate_limit=10, rate_limit_window=0.5, rate_limit_mode="sliding"
    ) as sim:
        (iface,) = sim.add_interfaces(1)
        async with client_for(sim, rate_limit=10, rate_limit_window=0.5) as client:
            await asyncio.gather(*(client.get_network_interface(iface) for _ in range(35)))
        assert sim.stats.rate_limited == 0


async def test_concurrent_callers_pause_together_after_a_429() -> None:
    async with KatapultSimulator() as sim:
        (iface,) = sim.add_interfaces(1)
        sim.inject(FaultKind.RATE_LIMIT, times=1, retry_after=0.3)
        async with client_for(sim) as client:
            await client.get_network_interface(iface)  # rejected, paused, retried
            before = sim.requests[-1].at
            await asyncio.gather(*(client.get_network_interface(iface) for _ in range(10)))
        ok = [r for r in sim.requests if r.status == 200]
        rejected = [r for r in sim.requests if r.status == 429]
        assert len(rejected) == 1
        assert ok[0].at - rejected[0].at >= 0.29
        assert all(r.at >= before for r in ok[1:])


async def test_retry_after_http_date_is_honoured() -> None:
    async with KatapultSimulator() as sim:
        (iface,) = sim.add_interfaces(1)
        sim.inject(FaultKind.RATE_LIMIT, times=1, retry_after="0.4")
        async with client_for(sim) as client:
            await client.get_network_interface(iface)
        first, second = sim.requests[0], sim.requests[1]
        assert first.status == 429
        assert second.at - first.at >= 0.39


async def test_limiter_shared_between_clients() -> None:
    async with KatapultSimulator(
        rate_limit=6, rate_limit_window=0.5, rate_limit_mode="sliding"
    ) as sim:
        (iface,) = sim.add_interfaces(1)
        limiter = ka.RateLimiter(6, 0.5)
        async with client_for(sim, limiter=limiter) as a, client_for(sim, limiter=limiter) as b:
            calls = [
                c.get_network_interface(iface)
                for c in itertools.islice(itertools.cycle([a, b]), 20)
            ]
            await asyncio.gather(*calls)
            assert a.limiter is b.limiter
        assert sim.stats.rate_limited == 0


async def test_a_crowd_larger_than_the_limit_learns_it_from_the_first_answer() -> None:
    async with KatapultSimulator(
        rate_limit=10, rate_limit_window=1.0, rate_limit_mode="sliding"
    ) as sim:
        (iface,) = sim.add_interfaces(1)
        async with client_for(sim, rate_limit_window=1.0) as client:
            await asyncio.gather(*(client.get_network_interface(iface) for _ in range(25)))
        assert sim.stats.rate_limited == 0
