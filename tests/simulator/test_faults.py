"""Injected faults: what each does to the request it hits, and which requests it hits."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from katapult_async.testing import FaultKind, KatapultSimulator

from .helpers import UPDATE, call, error_of, load_reference, profile_id, update_body


async def test_service_unavailable(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    rule = sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=2)
    assert sim.faults == (rule,)
    statuses = [(await call(session, sim, "GET", "/tasks/task_x")).status for _ in range(3)]
    assert statuses == [503, 503, 404]
    assert not sim.faults
    assert sim.stats.faults == {FaultKind.SERVICE_UNAVAILABLE: 2}


async def test_service_unavailable_body(session: aiohttp.ClientSession) -> None:
    async with KatapultSimulator(rate_limit=50, error_envelope="flat") as sim:
        sim.inject(FaultKind.SERVICE_UNAVAILABLE)
        reply = await call(session, sim, "GET", "/tasks/task_x")
        assert error_of(reply, "flat")["code"] == "service_unavailable"
        assert reply.headers["X-Ratelimit-Remaining"] == "49"  # faulted requests count


async def test_task_queueing_error_hits_updates_only(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    [interface_id] = sim.add_interfaces(1)
    sim.inject(FaultKind.TASK_QUEUEING_ERROR)
    assert (await call(session, sim, "GET", "/tasks/task_x")).status == 404
    reply = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    assert reply.status == 406
    error = error_of(reply)
    expected = load_reference("task_queueing_error.json")["error"]
    assert (error["code"], error["description"]) == (expected["code"], expected["description"])
    assert isinstance(error["detail"]["details"], str)
    assert sim.interfaces[interface_id].speed_profile_id == profile_id(sim, "10gbps")
    assert not sim.tasks


async def test_drop_connection_applies_nothing(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    [interface_id] = sim.add_interfaces(1)
    sim.inject(FaultKind.DROP_CONNECTION, method="patch")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    assert not sim.tasks
    assert sim.interfaces[interface_id].speed_profile_id == profile_id(sim, "10gbps")
    [logged] = sim.requests
    assert (logged.status, logged.fault) == (None, FaultKind.DROP_CONNECTION)
    assert sim.stats.dropped == 1
    # The next request is served normally.
    assert (
        await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    ).status == 200


async def test_lost_response_applies_the_request(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    [interface_id] = sim.add_interfaces(1)
    sim.inject(FaultKind.LOST_RESPONSE, path="update_speed_profile")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    assert len(sim.tasks) == 1
    assert sim.interfaces[interface_id].speed_profile_id == profile_id(sim, "1gbps")
    retry = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    assert error_of(retry)["code"] == "speed_profile_already_assigned"
    assert [r.status for r in sim.requests] == [None, 422]


async def test_slow_response(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    first, second = sim.add_interfaces(2)
    sim.inject(FaultKind.SLOW_RESPONSE, delay=0.3)
    with pytest.raises(asyncio.TimeoutError):
        await call(session, sim, "PATCH", UPDATE, json_body=update_body(first), timeout=0.1)
    await asyncio.sleep(0.35)
    # The client hung up before the delay ended: the update was not applied.
    assert sim.interfaces[first].speed_profile_id == profile_id(sim, "10gbps")
    assert sim.requests[-1].status is None
    sim.inject(FaultKind.SLOW_RESPONSE, delay=0.1)
    started = time.monotonic()
    reply = await call(session, sim, "PATCH", UPDATE, json_body=update_body(second))
    assert time.monotonic() - started >= 0.1
    assert reply.status == 200
    assert sim.requests[-1].fault is FaultKind.SLOW_RESPONSE


async def test_close_does_not_wait_for_slow_responses(session: aiohttp.ClientSession) -> None:
    sim = KatapultSimulator()
    await sim.start()
    sim.inject(FaultKind.SLOW_RESPONSE, delay=30)
    pending = asyncio.ensure_future(call(session, sim, "GET", "/tasks/task_x"))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await sim.close()
    assert time.monotonic() - started < 2
    with pytest.raises(aiohttp.ClientError):
        await pending


async def test_html_502(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    sim.inject(FaultKind.HTML_502)
    reply = await call(session, sim, "GET", "/tasks/task_x")
    assert reply.status == 502
    assert reply.headers["Content-Type"] == "text/html"
    assert "502 Bad Gateway" in reply.body


async def test_injected_rate_limit(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    sim.inject(FaultKind.RATE_LIMIT, retry_after=2)
    sim.inject(FaultKind.RATE_LIMIT, total_permitted=7, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    first = await call(session, sim, "GET", "/tasks/task_x")
    assert (first.status, first.headers["Retry-After"]) == (429, "2")
    assert error_of(first)["detail"] == {"total_permitted": 1000}
    second = await call(session, sim, "GET", "/tasks/task_x")
    assert second.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert error_of(second)["detail"] == {"total_permitted": 7}


async def test_task_not_found_hits_task_reads_only(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    [interface_id] = sim.add_interfaces(1)
    sim.inject(FaultKind.TASK_NOT_FOUND)
    created = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    assert created.status == 200
    path = f"/tasks/{created.body['task']['id']}"
    lagging = await call(session, sim, "GET", path)
    assert error_of(lagging) == load_reference("task_not_found_error.json")["error"]
    assert (await call(session, sim, "GET", path)).status == 200


async def test_fault_filters_and_probability(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=None, path="/organizations/")
    sim.inject(FaultKind.HTML_502, times=-1, probability=0.0)
    profiles = "/organizations/_/network_speed_profiles"
    params = {"organization[sub_domain]": "acme"}
    for _ in range(3):
        assert (await call(session, sim, "GET", profiles, params=params)).status == 503
        assert (await call(session, sim, "GET", "/tasks/task_x")).status == 404
    sim.clear_faults()
    assert (await call(session, sim, "GET", profiles, params=params)).status == 200
    with pytest.raises(ValueError, match="positive delay"):
        sim.inject(FaultKind.SLOW_RESPONSE)
    with pytest.raises(ValueError, match="not_a_fault"):
        sim.inject("not_a_fault")


async def test_chaos_is_seeded(session: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        async with KatapultSimulator(seed=11) as sim:
            sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=None, probability=0.4)
            runs.append([(await call(session, sim, "GET", "/tasks/t")).status for _ in range(30)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {404, 503}
