"""The admin HTTP API under ``/_sim/``."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from katapult_async.testing import KatapultSimulator

from .helpers import UPDATE, call, profile_id, update_body


async def admin(
    session: aiohttp.ClientSession,
    sim: KatapultSimulator,
    method: str,
    path: str,
    body: Any = None,
) -> tuple[int, Any]:
    async with session.request(method, sim.admin_url + path, json=body) as response:
        return response.status, await response.json()


async def test_admin_endpoints(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    status, created = await admin(session, sim, "POST", "/interfaces", {"count": 3})
    assert status == 200
    ids = created["interfaces"]
    assert (await admin(session, sim, "GET", "/interfaces"))[1] == {"interfaces": ids}
    everything = (await admin(session, sim, "GET", "/interfaces?virtual_machine_id=all"))[1]
    assert set(ids) < set(everything["interfaces"])

    await admin(session, sim, "POST", "/faults", {"kind": "service_unavailable", "times": 1})
    assert (await admin(session, sim, "GET", "/faults"))[1]["faults"][0]["kind"] == (
        "service_unavailable"
    )
    assert (await call(session, sim, "PATCH", UPDATE, json_body=update_body(ids[0]))).status == 503
    patched = await call(session, sim, "PATCH", UPDATE, json_body=update_body(ids[0]))
    task_id = patched.body["task"]["id"]
    await admin(session, sim, "POST", "/faults", {"kind": "html_502", "times": -1})
    await admin(session, sim, "DELETE", "/faults")
    assert not sim.faults

    _, state = await admin(session, sim, "GET", "/state")
    assert state["interfaces"][ids[0]] == profile_id(sim, "1gbps")
    task = state["tasks"][task_id]
    assert task["interface_id"] == ids[0]
    assert task["status"] in {"pending", "running", "completed"}
    assert task["finishes_at"] == pytest.approx(sim.tasks[task_id].finishes_at)
    assert task["finishes_at_wall"] == pytest.approx(sim.to_wall(task["finishes_at"]), abs=0.01)
    assert abs(task["created_wall"] - time.time()) < 5
    assert state["stats"]["total"] == 2
    assert state["stats"]["faults"] == {"service_unavailable": 1}
    assert state["stats"]["by_status"] == {"200": 1, "503": 1}

    _, log = await admin(session, sim, "GET", "/requests")
    assert [entry["status"] for entry in log["requests"]] == [503, 200]
    assert log["requests"][0]["fault"] == "service_unavailable"
    assert abs(log["requests"][0]["at_wall"] - time.time()) < 5

    assert (await admin(session, sim, "POST", "/reset_stats"))[0] == 200
    assert sim.stats.total == 0
    await admin(session, sim, "DELETE", "/requests")
    assert sim.requests == []
    # Admin requests are neither counted nor logged.
    assert sim.stats.total == 0


async def test_admin_errors(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    status, body = await admin(session, sim, "POST", "/faults", {"kind": "meteor"})
    assert (status, body["error"]["code"]) == (400, "invalid_admin_request")
    status, body = await admin(session, sim, "POST", "/faults", {"kind": "html_502", "x": 1})
    assert status == 400
    status, body = await admin(session, sim, "GET", "/nothing")
    assert (status, body["error"]["code"]) == (404, "route_not_found")
