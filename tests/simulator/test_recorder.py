"""The request log and the counters."""

from __future__ import annotations

import time

import aiohttp

from katapult_async.testing import KatapultSimulator

from .helpers import UPDATE, call, update_body


async def test_request_log(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    [interface_id] = sim.add_interfaces(1)
    before = time.monotonic()
    reply = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    await call(session, sim, "GET", "/tasks/task", params={"task[id]": "task_x"})
    patch, poll = sim.requests
    assert patch.method == "PATCH"
    assert patch.path == "/core/v1" + UPDATE
    assert patch.body == update_body(interface_id)
    assert patch.headers["Authorization"] == f"Bearer {sim.token}"
    assert patch.token == sim.token
    assert patch.status == 200
    assert patch.fault is None
    assert patch.request_id == reply.headers["X-Request-Id"]
    assert before <= patch.at <= poll.at <= time.monotonic()
    assert poll.query == {"task[id]": "task_x"}
    assert poll.body is None
    assert poll.status == 404
    stats = sim.stats
    assert (stats.total, stats.patches, stats.task_polls, stats.tasks_created) == (2, 1, 1, 1)
    assert stats.by_status == {200: 1, 404: 1}
    sim.clear_requests()
    sim.reset_stats()
    assert sim.requests == []
    assert sim.stats.total == 0


async def test_request_log_can_be_bounded_or_off(session: aiohttp.ClientSession) -> None:
    async with KatapultSimulator(max_recorded_requests=3) as bounded:
        for n in range(5):
            await call(session, bounded, "GET", f"/tasks/task_{n}")
        assert [r.path[-1] for r in bounded.requests] == ["2", "3", "4"]
    async with KatapultSimulator(record_requests=False) as unrecorded:
        await call(session, unrecorded, "GET", "/tasks/task_x")
        assert unrecorded.requests == []
        assert unrecorded.stats.task_polls == 1
