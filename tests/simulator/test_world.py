"""The task lifecycle: statuses over time, failures that revert, seeded replays."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from katapult_async.testing import (
    KatapultSimulator,
    SimulatedTaskStatus,
    SimulatorConfig,
    TaskOutcome,
)

from .helpers import INTERFACE, UPDATE, FakeClock, call, profile_id, update_body


async def test_task_lifecycle_on_the_real_clock(session: aiohttp.ClientSession) -> None:
    async with KatapultSimulator(task_duration=0.4, task_start_delay=0.1) as sim:
        [interface_id] = sim.add_interfaces(1)
        created = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
        task_id = created.body["task"]["id"]
        finishes_at = sim.tasks[task_id].finishes_at
        assert finishes_at is not None
        seen: list[tuple[str, int]] = []
        while True:
            task = (await call(session, sim, "GET", f"/tasks/{task_id}")).body["task"]
            seen.append((task["status"], task["progress"]))
            if task["status"] == "completed":
                break
            await asyncio.sleep(0.03)
        assert time.monotonic() >= finishes_at
        statuses = [status for status, _ in seen]
        assert statuses[0] == "pending"
        assert "running" in statuses
        assert statuses == sorted(statuses, key=["pending", "running", "completed"].index)
        progress = [p for _, p in seen]
        assert progress == sorted(progress)
        assert progress[0] == 0
        assert progress[-1] == 100
        assert all(5 <= p <= 95 for s, p in seen if s == "running")
        assert task["started_at"] is not None
        assert task["finished_at"] is not None


async def test_task_lifecycle_on_an_injected_clock(session: aiohttp.ClientSession) -> None:
    clock, wall = FakeClock(500.0), FakeClock(1_700_000_000.0)
    async with KatapultSimulator(
        task_duration=4.0, task_start_delay=1.0, clock=clock, wall_clock=wall
    ) as sim:
        [interface_id] = sim.add_interfaces(1)
        created = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
        task_id = created.body["task"]["id"]
        assert sim.tasks[task_id].created == 500.0
        assert sim.tasks[task_id].finishes_at == 504.0

        async def read() -> dict[str, Any]:
            reply = await call(session, sim, "GET", f"/tasks/{task_id}")
            task: dict[str, Any] = reply.body["task"]
            return task

        assert (await read())["status"] == "pending"
        clock.advance(1.0)
        running = await read()
        assert (running["status"], running["progress"]) == ("running", 5)
        assert running["started_at"] == 1_700_000_001
        assert running["finished_at"] is None
        clock.advance(1.5)
        assert (await read())["progress"] == 50
        clock.advance(1.5)
        done = await read()
        assert (done["status"], done["progress"]) == ("completed", 100)
        assert (done["created_at"], done["finished_at"]) == (1_700_000_000, 1_700_000_004)
        assert sim.tasks[task_id].status_at(clock()) is SimulatedTaskStatus.COMPLETED


async def test_instant_tasks(session: aiohttp.ClientSession) -> None:
    async with KatapultSimulator(task_duration=0) as sim:
        [interface_id] = sim.add_interfaces(1)
        created = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
        assert created.body["task"]["status"] == "pending"
        task = (await call(session, sim, "GET", f"/tasks/{created.body['task']['id']}")).body
        assert (task["task"]["status"], task["task"]["progress"]) == ("completed", 100)


async def test_failed_task_reverts_the_interface(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(100.0)
    async with KatapultSimulator(task_duration=2.0, task_failure_rate=1.0, clock=clock) as sim:
        first, second = sim.add_interfaces(2)
        one = await call(session, sim, "PATCH", UPDATE, json_body=update_body(first))
        await call(session, sim, "PATCH", UPDATE, json_body=update_body(second))
        assert sim.tasks[one.body["task"]["id"]].outcome is TaskOutcome.FAILED
        assert sim.interfaces[first].speed_profile_id == profile_id(sim, "1gbps")
        clock.advance(1.0)
        # A later update for `second` is accepted before its first task fails: it stands.
        later = update_body(second, permalink="100mbps")
        assert (await call(session, sim, "PATCH", UPDATE, json_body=later)).status == 200
        clock.advance(1.0)
        task = (await call(session, sim, "GET", f"/tasks/{one.body['task']['id']}")).body["task"]
        assert task["status"] == "failed"
        assert task["finished_at"] is not None
        assert sim.interfaces[first].speed_profile_id == profile_id(sim, "10gbps")
        assert sim.interfaces[second].speed_profile_id == profile_id(sim, "100mbps")
        reread = await call(
            session, sim, "GET", INTERFACE, params={"virtual_machine_network_interface[id]": first}
        )
        assert reread.body["virtual_machine_network_interface"]["speed_profile"]["permalink"] == (
            "10gbps"
        )
        # After the revert, the same change is accepted again.
        assert (
            await call(session, sim, "PATCH", UPDATE, json_body=update_body(first))
        ).status == 200


async def test_settle_applies_reverts_without_requests() -> None:
    clock = FakeClock(0.0)
    sim = KatapultSimulator(task_duration=1.0, task_failure_rate=1.0, clock=clock)
    await sim.start()
    try:
        [interface_id] = sim.add_interfaces(1)
        async with aiohttp.ClientSession() as session:
            await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
        interfaces = sim.interfaces
        clock.advance(1.0)
        assert interfaces[interface_id].speed_profile_id == profile_id(sim, "1gbps")
        sim.settle()
        assert interfaces[interface_id].speed_profile_id == profile_id(sim, "10gbps")
    finally:
        await sim.close()


async def test_never_finishing_tasks(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(0.0)
    async with KatapultSimulator(task_never_finish_rate=1.0, clock=clock) as sim:
        [interface_id] = sim.add_interfaces(1)
        created = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
        task_id = created.body["task"]["id"]
        assert sim.tasks[task_id].finishes_at is None
        clock.advance(10_000)
        task = (await call(session, sim, "GET", f"/tasks/{task_id}")).body["task"]
        assert (task["status"], task["progress"], task["finished_at"]) == ("running", 95, None)


async def test_seeded_runs_replay(session: aiohttp.ClientSession) -> None:
    outcomes = []
    for _ in range(2):
        async with KatapultSimulator(
            seed=7,
            task_duration_jitter=0.3,
            task_failure_rate=0.3,
            task_never_finish_rate=0.1,
            task_no_change_rate=0.2,
        ) as sim:
            ids = sim.add_interfaces(20)
            for interface_id in ids:
                await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
            outcomes.append(
                [(t.id, t.outcome, round(t.duration, 9), sim.token) for t in sim.tasks.values()]
            )
    assert outcomes[0] == outcomes[1]
    durations = [duration for _, _, duration, _ in outcomes[0]]
    assert all(1.4 <= d <= 2.6 for d in durations)
    assert len(set(durations)) > 1
    assert {outcome for _, outcome, _, _ in outcomes[0]} == set(TaskOutcome)


async def test_wait_for_tasks(session: aiohttp.ClientSession) -> None:
    async with KatapultSimulator(task_duration=0.15, task_failure_rate=1.0) as sim:
        [interface_id] = sim.add_interfaces(1)
        await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
        await sim.wait_for_tasks(timeout=5)
        assert sim.interfaces[interface_id].speed_profile_id == profile_id(sim, "10gbps")


async def test_concurrent_updates(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    ids = sim.add_interfaces(200)
    replies = await asyncio.gather(
        *(call(session, sim, "PATCH", UPDATE, json_body=update_body(i)) for i in ids)
    )
    assert {reply.status for reply in replies} == {200}
    assert len({reply.body["task"]["id"] for reply in replies}) == 200
    assert sim.stats.tasks_created == 200


async def _read_task(
    session: aiohttp.ClientSession, sim: KatapultSimulator, task_id: str
) -> tuple[str, int]:
    task = (await call(session, sim, "GET", f"/tasks/{task_id}")).body["task"]
    return task["status"], task["progress"]


async def _create_task(session: aiohttp.ClientSession, sim: KatapultSimulator) -> str:
    [interface_id] = sim.add_interfaces(1)
    created = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    assert created.body["task"]["progress"] == 0
    task_id: str = created.body["task"]["id"]
    return task_id


async def test_live_progress_stays_at_5_while_running_counted_by_reads(
    session: aiohttp.ClientSession,
) -> None:
    async with KatapultSimulator(task_progress="live", task_polls=3) as sim:
        task_id = await _create_task(session, sim)
        assert sim.tasks[task_id].progress_mode == "live"
        assert await _read_task(session, sim, task_id) == ("running", 5)
        assert await _read_task(session, sim, task_id) == ("running", 5)
        assert await _read_task(session, sim, task_id) == ("completed", 100)
        assert await _read_task(session, sim, task_id) == ("completed", 100)


async def test_live_progress_on_an_injected_clock(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(0.0)
    async with KatapultSimulator(
        task_progress="live", task_duration=4.0, task_start_delay=1.0, clock=clock
    ) as sim:
        task_id = await _create_task(session, sim)
        assert await _read_task(session, sim, task_id) == ("pending", 0)
        clock.advance(1.0)
        assert await _read_task(session, sim, task_id) == ("running", 5)
        clock.advance(2.5)
        assert await _read_task(session, sim, task_id) == ("running", 5)
        clock.advance(0.5)
        assert await _read_task(session, sim, task_id) == ("completed", 100)


async def test_live_progress_of_a_failed_task_stays_at_5(session: aiohttp.ClientSession) -> None:
    async with KatapultSimulator(task_progress="live", task_polls=2, task_failure_rate=1.0) as sim:
        task_id = await _create_task(session, sim)
        assert await _read_task(session, sim, task_id) == ("running", 5)
        assert await _read_task(session, sim, task_id) == ("failed", 5)


async def test_default_progress_still_rises_while_running(
    session: aiohttp.ClientSession,
) -> None:
    async with KatapultSimulator(task_polls=4) as sim:
        assert sim.config.task_progress == "rising"
        task_id = await _create_task(session, sim)
        seen = [await _read_task(session, sim, task_id) for _ in range(4)]
        assert [status for status, _ in seen] == ["running"] * 3 + ["completed"]
        progress = [p for _, p in seen]
        assert progress == sorted(progress)
        assert all(5 < p < 100 for p in progress[:3])
        assert progress[-1] == 100


@pytest.mark.parametrize("value", ["flat", "", "LIVE", None, 5])
def test_task_progress_rejects_unknown_values(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        SimulatorConfig(task_progress=value)
    with pytest.raises((ValueError, TypeError)):
        KatapultSimulator(task_progress=value)


async def test_tasks_to_a_fail_profile_fail_and_revert(session: aiohttp.ClientSession) -> None:
    assert SimulatorConfig(fail_profiles="1gbps, 500mbps").fail_profiles == ("1gbps", "500mbps")
    with pytest.raises(ValueError, match="fail_profiles: no speed profile 'nosuch'"):
        KatapultSimulator(fail_profiles=["nosuch"])
    clock = FakeClock(0.0)
    async with KatapultSimulator(task_duration=1.0, fail_profiles=["1gbps"], clock=clock) as sim:
        first, second = sim.add_interfaces(2)
        bad = await call(session, sim, "PATCH", UPDATE, json_body=update_body(first))
        good = update_body(second, permalink="100mbps")
        await call(session, sim, "PATCH", UPDATE, json_body=good)
        clock.advance(1.0)
        task = (await call(session, sim, "GET", f"/tasks/{bad.body['task']['id']}")).body["task"]
        assert task["status"] == "failed"
        sim.settle()
        assert sim.interfaces[first].speed_profile_id == profile_id(sim, "10gbps")
        assert sim.interfaces[second].speed_profile_id == profile_id(sim, "100mbps")


async def test_no_change_tasks_complete_and_leave_the_old_profile(
    session: aiohttp.ClientSession,
) -> None:
    with pytest.raises(ValueError, match="must not exceed 1"):
        SimulatorConfig(task_failure_rate=0.5, task_no_change_rate=0.6)
    clock = FakeClock(0.0)
    async with KatapultSimulator(task_duration=1.0, task_no_change_rate=1.0, clock=clock) as sim:
        [interface_id] = sim.add_interfaces(1)
        created = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
        assert sim.tasks[created.body["task"]["id"]].outcome is TaskOutcome.NO_CHANGE
        clock.advance(1.0)
        task_path = f"/tasks/{created.body['task']['id']}"
        task = (await call(session, sim, "GET", task_path)).body["task"]
        assert (task["status"], task["progress"]) == ("completed", 100)
        reread = await call(
            session,
            sim,
            "GET",
            INTERFACE,
            params={"virtual_machine_network_interface[id]": interface_id},
        )
        profile = reread.body["virtual_machine_network_interface"]["speed_profile"]
        assert profile["permalink"] == "10gbps"
