"""Tests of the public API simulator, over real loopback sockets with aiohttp.ClientSession."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

import katapult_async.testing as testing
from katapult_async.testing import (
    FaultKind,
    KatapultSimulator,
    SimulatorConfig,
    TaskOutcome,
    TaskStatus,
)
from katapult_async.testing._ids import opaque_id
from katapult_async.testing._ratelimit import RateCounter

UPDATE = (
    "/virtual_machine_network_interfaces/virtual_machine_network_interface/update_speed_profile"
)
UPDATE_UNDERSCORE = "/virtual_machine_network_interfaces/_/update_speed_profile"
INTERFACE = "/virtual_machine_network_interfaces/virtual_machine_network_interface"
DEFAULT = object()


def reference_file(name: str) -> Path:
    """A live-API reference file: tests/fixtures/ if copied there, else the shared folder."""
    for folder in (
        Path(__file__).parent / "fixtures",
        Path(__file__).parent.parent.parent / "shared" / "katapult-api" / "fixtures",
        Path(__file__).parent.parent.parent / "shared" / "katapult-api",
    ):
        if (folder / name).exists():
            return folder / name
    pytest.skip(f"reference file {name} is not available")


def load_reference(name: str) -> Any:
    return json.loads(reference_file(name).read_text())


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Reply(NamedTuple):
    status: int
    headers: CIMultiDict[str]
    body: Any


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def sim() -> AsyncIterator[KatapultSimulator]:
    async with KatapultSimulator(rate_limit=1000, task_duration=0.2) as simulator:
        yield simulator


async def call(
    session: aiohttp.ClientSession,
    sim: KatapultSimulator,
    method: str,
    path: str,
    *,
    token: Any = DEFAULT,
    json_body: Any = None,
    params: dict[str, str] | None = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Reply:
    all_headers = dict(headers or {})
    if token is DEFAULT:
        token = sim.token
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with session.request(
        method,
        sim.base_url + path,
        json=json_body,
        params=params,
        data=data,
        headers=all_headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        text = await response.text()
        is_json = response.content_type == "application/json"
        body = json.loads(text) if is_json else text
        return Reply(response.status, CIMultiDict(response.headers), body)


def update_body(interface_id: str, **speed_profile: str) -> dict[str, Any]:
    return {
        "virtual_machine_network_interface": {"id": interface_id},
        "speed_profile": speed_profile or {"permalink": "1gbps"},
    }


def error_of(reply: Reply, envelope: str = "wrapped") -> dict[str, Any]:
    body: dict[str, Any] = reply.body
    if envelope == "wrapped":
        assert set(body) == {"error"}
        body = body["error"]
    assert set(body) == {"code", "description", "detail"}
    return body


def profile_id(sim: KatapultSimulator, permalink: str) -> str:
    return sim.profile_by_permalink(permalink).id


# -- package surface ---------------------------------------------------------------------------


def test_all_lists_the_public_names_sorted() -> None:
    public = {name for name in dir(testing) if not name.startswith("_")}
    assert sorted(testing.__all__) == testing.__all__
    assert set(testing.__all__) == public


def test_constructor_defaults_match_the_config() -> None:
    assert KatapultSimulator().config == SimulatorConfig()
    config = SimulatorConfig(rate_limit=5, seed=3)
    assert KatapultSimulator.from_config(config).config is config


def test_refuses_non_loopback_hosts_unless_allowed() -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        KatapultSimulator(host="0.0.0.0")
    assert KatapultSimulator(host="0.0.0.0", allow_non_loopback=True).config.host == "0.0.0.0"
    assert KatapultSimulator(host="::1").config.host == "::1"


@pytest.mark.parametrize(
    "options",
    [
        {"task_failure_rate": 1.5},
        {"task_failure_rate": 0.6, "task_never_finish_rate": 0.6},
        {"rate_limit": 0},
        {"rate_limit_window": 0},
        {"rate_limit_mode": "leaky"},
        {"task_duration": -1},
    ],
)
def test_rejects_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(**options)


def test_generated_ids_look_live_and_are_unique() -> None:
    ids = {opaque_id("vmnet_", n) for n in range(20_000)}
    assert len(ids) == 20_000
    assert all(re.fullmatch(r"vmnet_[0-9A-Za-z]{16}", i) for i in ids)


def test_add_interfaces_is_fast_and_ordered() -> None:
    sim = KatapultSimulator()
    started = time.perf_counter()
    ids = sim.add_interfaces(100_000, speed_profile="1gbps")
    assert time.perf_counter() - started < 3.0  # about 0.3 s; slack for busy CI machines
    assert len(set(ids)) == 100_000
    interface = sim.interfaces[ids[-1]]
    assert interface.speed_profile_id == profile_id(sim, "1gbps")
    assert interface.virtual_machine_id == sim.default_virtual_machine.id
    with pytest.raises(KeyError):
        sim.add_interfaces(1, speed_profile="nope")


async def test_base_url_token_and_lifecycle() -> None:
    sim = KatapultSimulator(token="secret-token")
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    await sim.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/core/v1", sim.base_url)
        assert sim.token == "secret-token"
        assert sim.auth_headers == {"Authorization": "Bearer secret-token"}
    finally:
        await sim.close()
        await sim.close()


# -- endpoints and URL styles ------------------------------------------------------------------


@pytest.mark.parametrize("path", [UPDATE, UPDATE_UNDERSCORE])
async def test_update_creates_a_pending_task_and_assigns_at_once(
    session: aiohttp.ClientSession, sim: KatapultSimulator, path: str
) -> None:
    [interface_id] = sim.add_interfaces(1)
    reply = await call(session, sim, "PATCH", path, json_body=update_body(interface_id))
    assert reply.status == 200
    task = reply.body["task"]
    assert task["status"] == "pending"
    assert task["progress"] == 0
    assert task["name"] == "Change network interface speed profile"
    assert task["started_at"] is None
    assert task["finished_at"] is None
    assert re.fullmatch(r"task_[0-9A-Za-z]{16}", task["id"])
    assert abs(task["created_at"] - time.time()) < 5
    assert sim.interfaces[interface_id].speed_profile_id == profile_id(sim, "1gbps")
    record = sim.tasks[task["id"]]
    assert record.interface_id == interface_id
    assert record.speed_profile_id == profile_id(sim, "1gbps")
    assert record.previous_speed_profile_id == profile_id(sim, "10gbps")
    assert record.outcome is TaskOutcome.COMPLETED
    assert record.finishes_at == pytest.approx(record.created + 0.2)


async def test_update_by_profile_id_and_interface_id_in_path(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    [interface_id] = sim.add_interfaces(1)
    target = profile_id(sim, "100mbps")
    reply = await call(
        session,
        sim,
        "PATCH",
        f"/virtual_machine_network_interfaces/{interface_id}/update_speed_profile",
        json_body={"speed_profile": {"id": target}},
    )
    assert reply.status == 200
    assert sim.interfaces[interface_id].speed_profile_id == target


async def test_repeated_update_gets_already_assigned(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    [interface_id] = sim.add_interfaces(1)
    first = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    assert first.status == 200
    again = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    assert again.status == 422
    assert error_of(again) == load_reference("speed_profile_already_assigned_error.json")["error"]
    assert again.headers["X-Api-Schema"] == "json-error"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/tasks/task", "query"),
        ("/tasks/{id}", None),
        ("/tasks/_", "query"),
    ],
)
async def test_task_read_in_every_url_style(
    session: aiohttp.ClientSession, sim: KatapultSimulator, path: str, params: str | None
) -> None:
    [interface_id] = sim.add_interfaces(1)
    created = await call(session, sim, "PATCH", UPDATE, json_body=update_body(interface_id))
    task_id = created.body["task"]["id"]
    reply = await call(
        session,
        sim,
        "GET",
        path.format(id=task_id),
        params={"task[id]": task_id} if params else None,
    )
    assert reply.status == 200
    assert reply.body["task"]["id"] == task_id


@pytest.mark.parametrize(
    ("path", "in_query"),
    [(INTERFACE, True), ("/virtual_machine_network_interfaces/_", True), ("/{id}", False)],
)
async def test_interface_read_in_every_url_style(
    session: aiohttp.ClientSession, sim: KatapultSimulator, path: str, in_query: bool
) -> None:
    [interface_id] = sim.add_interfaces(1, speed_profile="500mbps")
    if not in_query:
        path = "/virtual_machine_network_interfaces" + path.format(id=interface_id)
    params = {"virtual_machine_network_interface[id]": interface_id} if in_query else None
    reply = await call(session, sim, "GET", path, params=params)
    assert reply.status == 200
    body = reply.body["virtual_machine_network_interface"]
    assert body["id"] == interface_id
    assert body["speed_profile"] == {
        "id": profile_id(sim, "500mbps"),
        "name": "500Mbps",
        "permalink": "500mbps",
    }
    assert body["virtual_machine"] == {
        "id": sim.default_virtual_machine.id,
        "name": sim.default_virtual_machine.name,
    }
    assert body["state"] == "attached"
    assert body["virtual_network"] is None


async def test_vm_interface_list_paginates(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    vm = sim.add_virtual_machine("paged", fqdn="paged.example.com")
    with pytest.raises(ValueError, match="exists already"):
        sim.add_virtual_machine(fqdn="paged.example.com")
    ids = sim.add_interfaces(45, vm_id=vm.id)
    seen: list[str] = []
    for page in (1, 2, 3):
        reply = await call(
            session,
            sim,
            "GET",
            "/virtual_machines/virtual_machine/network_interfaces",
            params={"virtual_machine[id]": vm.id, "page": str(page), "per_page": "20"},
        )
        assert reply.status == 200
        assert reply.body["pagination"] == {
            "current_page": page,
            "total_pages": 3,
            "total": 45,
            "per_page": 20,
            "large_set": False,
        }
        seen += [item["id"] for item in reply.body["virtual_machine_network_interfaces"]]
    assert seen == ids
    by_fqdn = await call(
        session,
        sim,
        "GET",
        "/virtual_machines/_/network_interfaces",
        params={"virtual_machine[fqdn]": "paged.example.com"},
    )
    assert by_fqdn.body["pagination"]["per_page"] == 30
    assert len(by_fqdn.body["virtual_machine_network_interfaces"]) == 30
    in_path = await call(session, sim, "GET", f"/virtual_machines/{vm.id}/network_interfaces")
    assert in_path.body["pagination"]["total"] == 45


async def test_speed_profile_list(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    reply = await call(
        session,
        sim,
        "GET",
        "/organizations/organization/network_speed_profiles",
        params={"organization[sub_domain]": "acme"},
    )
    assert reply.status == 200
    permalinks = [p["permalink"] for p in reply.body["network_speed_profiles"]]
    assert {"1gbps", "100mbps", "10mbps", "10gbps", "500mbps"} <= set(permalinks)
    assert reply.body["pagination"]["total"] == len(permalinks)
    by_id = await call(
        session,
        sim,
        "GET",
        "/organizations/_/network_speed_profiles",
        params={"organization[id]": sim.organization.id, "per_page": "2", "page": "2"},
    )
    assert [p["permalink"] for p in by_id.body["network_speed_profiles"]] == permalinks[2:4]


# -- errors --------------------------------------------------------------------------------------


def _bad_requests(sim: KatapultSimulator, interface_id: str) -> list[tuple[Any, ...]]:
    """(method, path, kwargs, status, code, issue) for each validation or lookup error."""
    unknown = {"virtual_machine_network_interface": {"id": "vmnet_unknown"}}
    return [
        ("PATCH", UPDATE, {"json_body": update_body(interface_id, id="x", permalink="1gbps")},
         400, "invalid_argument", "ambiguous_lookup_values"),
        ("PATCH", UPDATE, {"json_body": {**update_body(interface_id), "speed_profile": {}}},
         400, "invalid_argument", "missing_lookup_value"),
        ("PATCH", UPDATE, {"json_body": {**update_body(interface_id), "speed_profile": "1gbps"}},
         400, "invalid_argument", "object_expected"),
        ("PATCH", UPDATE, {"json_body": {"virtual_machine_network_interface": {"id": interface_id}}},
         400, "missing_required_argument", None),
        ("PATCH", UPDATE, {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
         400, "invalid_json_body", None),
        ("PATCH", UPDATE, {"json_body": {**update_body(interface_id), **unknown}},
         404, "virtual_machine_network_interface_not_found", None),
        ("PATCH", UPDATE, {"json_body": update_body(interface_id, permalink="2gbps")},
         404, "network_speed_profile_not_found", None),
        ("PATCH", UPDATE, {"json_body": update_body(interface_id, id="nsp_nope")},
         404, "network_speed_profile_not_found", None),
        ("GET", "/tasks/task", {"params": {"task[id]": "task_nope"}},
         404, "task_not_found", None),
        ("GET", "/tasks/task", {}, 404, "task_not_found", None),
        ("GET", INTERFACE, {"params": {"virtual_machine_network_interface[id]": "vmnet_x"}},
         404, "virtual_machine_network_interface_not_found", None),
        ("GET", "/virtual_machines/_/network_interfaces", {"params": {"virtual_machine[id]": "x"}},
         404, "virtual_machine_not_found", None),
        ("GET", "/virtual_machines/_/network_interfaces",
         {"params": {"virtual_machine[id]": sim.default_virtual_machine.id, "per_page": "0"}},
         400, "invalid_argument", "validation_errors"),
        ("GET", "/virtual_machines/_/network_interfaces",
         {"params": {"virtual_machine[id]": sim.default_virtual_machine.id, "page": "two"}},
         400, "invalid_argument", "parse_error"),
        ("GET", "/organizations/_/network_speed_profiles",
         {"params": {"organization[sub_domain]": "nope"}}, 404, "organization_not_found", None),
        ("GET", "/organizations/_/network_speed_profiles",
         {"params": {"organization[sub_domain]": "acme", "organization[id]": "org_x"}},
         400, "invalid_argument", "ambiguous_lookup_values"),
    ]  # fmt: skip


@pytest.mark.parametrize("envelope", ["wrapped", "flat"])
async def test_request_errors_in_both_envelopes(
    session: aiohttp.ClientSession, envelope: Any
) -> None:
    async with KatapultSimulator(rate_limit=1000, error_envelope=envelope) as sim:
        [interface_id] = sim.add_interfaces(1)
        for method, path, kwargs, status, code, issue in _bad_requests(sim, interface_id):
            reply = await call(session, sim, method, path, **kwargs)
            assert (reply.status, error_of(reply, envelope)["code"]) == (status, code), path
            error = error_of(reply, envelope)
            assert error["description"]
            if issue is not None:
                assert error["detail"]["issue"] == issue
            assert reply.headers["Content-Type"] == "application/json"
            assert reply.headers["X-Api-Schema"] == "json-error"
            uuid.UUID(reply.headers["X-Request-Id"])
            assert "X-Ratelimit-Remaining" in reply.headers
        assert sim.interfaces[interface_id].speed_profile_id == profile_id(sim, "10gbps")
        assert not sim.tasks


async def test_both_lookup_error_describes_the_argument(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    [interface_id] = sim.add_interfaces(1)
    body = update_body(interface_id, id=profile_id(sim, "1gbps"), permalink="1gbps")
    error = error_of(await call(session, sim, "PATCH", UPDATE, json_body=body))
    assert error["description"] == "The 'speed_profile' argument is invalid"
    assert error["detail"]["path"] == ["speed_profile"]


async def test_unknown_routes(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    for method, path in [("GET", "/nothing/here"), ("GET", UPDATE), ("POST", "/tasks/task")]:
        reply = await call(session, sim, method, path)
        assert reply.status == 404
        assert error_of(reply)["code"] == "route_not_found"
        # Routing comes before authentication: not counted, no rate-limit headers.
        assert "X-Ratelimit-Remaining" not in reply.headers
    async with session.get(sim.root_url + "/elsewhere") as response:
        assert response.status == 404
    assert sim.stats.by_status == {404: 4}


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", ["wrapped", "flat"])
async def test_authentication_errors(session: aiohttp.ClientSession, envelope: Any) -> None:
    async with KatapultSimulator(rate_limit=10, error_envelope=envelope) as sim:
        path, params = "/tasks/task", {"task[id]": "task_x"}
        missing = await call(session, sim, "GET", path, params=params, token=None)
        garbled = await call(
            session, sim, "GET", path, params=params, token=None, headers={"Authorization": "xyz"}
        )
        for reply in (missing, garbled):
            assert reply.status == 400
            assert error_of(reply, envelope)["code"] == "missing_api_token"
            assert "X-Ratelimit-Remaining" not in reply.headers
        invalid = await call(session, sim, "GET", path, params=params, token="wrong")
        assert invalid.status == 403
        expected = load_reference("invalid_api_token_error.json")["error"]
        assert error_of(invalid, envelope) == expected
        # None of these counted against the default token.
        counted = await call(session, sim, "GET", path, params=params)
        assert counted.headers["X-Ratelimit-Remaining"] == "9"


async def test_scopes(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    [interface_id] = sim.add_interfaces(1)
    sim.add_token("reader", ["tasks:read", "virtual_machines:read"])
    sim.add_token("oauth", ["api.katapult.io/core/v1/virtual_machines"])
    denied = await call(
        session, sim, "PATCH", UPDATE, json_body=update_body(interface_id), token="reader"
    )
    assert denied.status == 403
    assert error_of(denied)["code"] == "scope_not_granted"
    assert error_of(denied)["detail"] == {"scopes": ["virtual_machines"]}
    assert "X-Ratelimit-Remaining" in denied.headers
    allowed = await call(
        session, sim, "PATCH", UPDATE, json_body=update_body(interface_id), token="oauth"
    )
    assert allowed.status == 200
    task_id = allowed.body["task"]["id"]
    no_tasks = await call(session, sim, "GET", f"/tasks/{task_id}", token="oauth")
    assert error_of(no_tasks)["detail"] == {"scopes": ["tasks", "tasks:read"]}
    read = await call(session, sim, "GET", f"/tasks/{task_id}", token="reader")
    assert read.status == 200
    # Listing speed profiles needs no particular scope.
    profiles = await call(
        session, sim, "GET", "/organizations/acme/network_speed_profiles", token="oauth"
    )
    assert profiles.status == 404  # "acme" in the path is taken as an organisation id
    profiles = await call(
        session,
        sim,
        "GET",
        "/organizations/_/network_speed_profiles",
        params={"organization[sub_domain]": "acme"},
        token="oauth",
    )
    assert profiles.status == 200


async def test_network_allow_list(session: aiohttp.ClientSession, sim: KatapultSimulator) -> None:
    sim.add_token("office-only", allowed_networks=["10.0.0.0/8"])
    sim.add_token("local", allowed_networks=["127.0.0.1"])
    path = f"/organizations/{sim.organization.id}/network_speed_profiles"
    refused = await call(session, sim, "GET", path, token="office-only")
    assert refused.status == 403
    assert error_of(refused)["code"] == "unauthorized_network_for_api_token"
    assert error_of(refused)["detail"] == {"ip_address": "127.0.0.1"}
    assert (await call(session, sim, "GET", path, token="local")).status == 200


# -- task lifecycle ------------------------------------------------------------------------------


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
        assert sim.tasks[task_id].status_at(clock()) is TaskStatus.COMPLETED


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
            seed=7, task_duration_jitter=0.3, task_failure_rate=0.3, task_never_finish_rate=0.1
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


# -- rate limits ---------------------------------------------------------------------------------


async def test_fixed_window_rate_limit(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(10.1)
    async with KatapultSimulator(rate_limit=3, rate_limit_window=0.5, clock=clock) as sim:
        path = "/tasks/task_x"
        replies = [await call(session, sim, "GET", path) for _ in range(5)]
        assert [r.status for r in replies] == [404, 404, 404, 429, 429]
        assert [r.headers["X-Ratelimit-Remaining"] for r in replies] == ["2", "1", "0", "0", "0"]
        assert {r.headers["X-Ratelimit-Permitted"] for r in replies} == {"3"}
        limited = error_of(replies[3])
        assert limited["code"] == "rate_limit_reached"
        assert limited["detail"] == {"total_permitted": 3}
        assert "Retry-After" not in replies[3].headers
        clock.now = 10.4999
        assert (await call(session, sim, "GET", path)).status == 429
        clock.now = 10.5  # a window boundary: the budget refills
        refilled = await call(session, sim, "GET", path)
        assert (refilled.status, refilled.headers["X-Ratelimit-Remaining"]) == (404, "2")
        # Each token has its own budget.
        sim.add_token("other")
        other = await call(session, sim, "GET", path, token="other")
        assert other.headers["X-Ratelimit-Remaining"] == "2"
        assert sim.stats.rate_limited == 3


async def test_sliding_window_rate_limit_on_the_real_clock(session: aiohttp.ClientSession) -> None:
    limit, window = 5, 0.5
    async with KatapultSimulator(
        rate_limit=limit, rate_limit_window=window, rate_limit_mode="sliding"
    ) as sim:
        accepted_per_burst = []
        for burst, pause in ((8, 0.3), (3, 0.55), (8, 0.0)):
            replies = [await call(session, sim, "GET", "/tasks/task_x") for _ in range(burst)]
            accepted_per_burst.append(sum(reply.status != 429 for reply in replies))
            await asyncio.sleep(pause)
        # Refused requests count too, so the second burst, inside the first one's window,
        # gets nothing; the third comes after a whole quiet window.
        assert accepted_per_burst == [5, 0, 5]
        accepted = [r.at for r in sim.requests if r.status != 429]
        for at in accepted:
            assert sum(1 for other in accepted if at - window < other <= at) <= limit


@given(
    st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), max_size=200),
    st.integers(min_value=1, max_value=8),
    st.sampled_from(["fixed", "sliding"]),
)
def test_rate_counter_never_accepts_more_than_the_limit(
    times: list[float], limit: int, mode: Any
) -> None:
    window = 1.0
    counter = RateCounter(window, mode)
    accepted = [at for at in sorted(times) if counter.hit("token", at) <= limit]
    for at in accepted:
        if mode == "sliding":
            in_window = [other for other in accepted if at - window < other <= at]
        else:
            in_window = [other for other in accepted if other // window == at // window]
        assert len(in_window) <= limit


async def test_rate_limit_headers_can_be_turned_off(session: aiohttp.ClientSession) -> None:
    async with KatapultSimulator(rate_limit=1, rate_limit_headers=False) as sim:
        first = await call(session, sim, "GET", "/tasks/task_x")
        second = await call(session, sim, "GET", "/tasks/task_x")
        assert (first.status, second.status) == (404, 429)
        assert error_of(second)["detail"] == {"total_permitted": 1}
        for reply in (first, second):
            assert not any(name.lower().startswith("x-ratelimit") for name in reply.headers)
            assert "X-Request-Id" in reply.headers
    async with KatapultSimulator() as unlimited:
        reply = await call(session, unlimited, "GET", "/tasks/task_x")
        assert "X-Ratelimit-Permitted" not in reply.headers


# -- faults --------------------------------------------------------------------------------------


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


# -- request log and stats -----------------------------------------------------------------------


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


# -- admin endpoints -----------------------------------------------------------------------------


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


# -- fidelity to the recorded live API ----------------------------------------------------------


def shape(value: Any) -> Any:
    """The key structure of a JSON value: dicts by key, lists by their first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def recorded_interactions() -> Iterator[dict[str, Any]]:
    for interaction in load_reference("recorded-interactions.json")["interactions"]:
        if "/trash_objects/" not in interaction["request"]["url"]:
            yield interaction


async def test_responses_match_the_recorded_shapes(session: aiohttp.ClientSession) -> None:
    async with KatapultSimulator(rate_limit=1000) as sim:
        [interface_id] = sim.add_interfaces(1, speed_profile="100mbps")
        task_id = ""
        checked = set()
        for interaction in recorded_interactions():
            request, recorded = interaction["request"], interaction["response"]
            url = re.sub(r"vmnet_\w+", interface_id, request["url"])
            url = re.sub(r"sub_domain%5D=[^&]+", "sub_domain%5D=acme", url)
            if task_id:
                url = re.sub(r"task_\w+", task_id, url)
            body = request["body"]
            if body is not None:
                body = json.loads(re.sub(r"vmnet_\w+", interface_id, json.dumps(body)))
                current = sim.interfaces[interface_id].speed_profile_id
                target = "10mbps" if current == profile_id(sim, "1gbps") else "1gbps"
                body["speed_profile"] = {"permalink": target}
            path = url.split("/core/v1", 1)[1]
            async with session.request(
                request["method"],
                sim.base_url + path,
                json=body,
                headers={**request["headers"], **sim.auth_headers},
            ) as response:
                assert response.status == recorded["status"] == 200, url
                reply = await response.json()
                headers = response.headers
            assert shape(reply) == shape(recorded["body"]), url
            for name in ("X-Ratelimit-Permitted", "X-Ratelimit-Remaining", "X-Request-Id"):
                assert name in headers
            assert headers["Content-Type"] == recorded["headers"]["Content-Type"]
            if "task" in reply:
                task_id = reply["task"]["id"]
            checked.add((request["method"], path.split("?")[0].split("/")[1]))
        assert checked == {
            ("PATCH", "virtual_machine_network_interfaces"),
            ("GET", "virtual_machine_network_interfaces"),
            ("GET", "tasks"),
            ("GET", "organizations"),
        }


async def test_list_shapes_match_the_fixtures(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    reply = await call(
        session,
        sim,
        "GET",
        "/virtual_machines/_/network_interfaces",
        params={"virtual_machine[fqdn]": "sim-web-1.acme.kpult.com"},
    )
    fixture = load_reference("virtual_machine_network_interfaces_list.json")
    assert set(reply.body) == set(fixture)
    assert set(reply.body["pagination"]) == set(fixture["pagination"])
    item_keys = set(fixture["virtual_machine_network_interfaces"][0])
    assert item_keys <= set(reply.body["virtual_machine_network_interfaces"][0])


async def test_error_bodies_match_the_fixtures(
    session: aiohttp.ClientSession, sim: KatapultSimulator
) -> None:
    [interface_id] = sim.add_interfaces(1)
    cases: dict[str, tuple[str, str, dict[str, Any]]] = {
        "virtual_machine_network_interface_not_found_error.json": (
            "GET",
            INTERFACE,
            {"params": {"virtual_machine_network_interface[id]": "vmnet_x"}},
        ),
        "network_speed_profile_not_found_error.json": (
            "PATCH",
            UPDATE,
            {"json_body": update_body(interface_id, permalink="none")},
        ),
    }
    for fixture, (method, path, kwargs) in cases.items():
        reply = await call(session, sim, method, path, **kwargs)
        assert reply.body == load_reference(fixture), fixture


# -- running as a process ------------------------------------------------------------------------


def _child_process_options() -> dict[str, Any]:
    # Run the child from the directory the imported package lives in, so it imports the same code.
    root = Path(testing.__file__).parent.parent.parent
    path = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"cwd": root, "env": {**os.environ, "PYTHONPATH": os.pathsep.join(path)}}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM")
async def test_server_process(session: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "katapult_async.testing",
        "--interfaces",
        "3",
        "--rate-limit",
        "50",
        "--task-duration",
        "0",
        **_child_process_options(),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 15)
        ready = json.loads(line)
        assert set(ready) == {"base_url", "admin_url", "token", "interfaces"}
        assert ready["interfaces"] == 3
        assert ready["base_url"].startswith("http://127.0.0.1:")
        async with session.get(ready["admin_url"] + "/interfaces") as response:
            ids = (await response.json())["interfaces"]
        assert len(ids) == 3
        async with session.patch(
            ready["base_url"] + UPDATE_UNDERSCORE,
            json=update_body(ids[0]),
            headers={"Authorization": f"Bearer {ready['token']}"},
        ) as response:
            assert response.status == 200
            assert response.headers["X-Ratelimit-Remaining"] == "49"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert await process.stdout.read() == b""
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
async def test_server_process_refuses_public_hosts() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "katapult_async.testing",
        "--host",
        "0.0.0.0",
        **_child_process_options(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 2
    assert stdout == b""
    assert b"non-loopback" in stderr


async def test_serve_in_process() -> None:
    stop = asyncio.Event()
    seen: list[str] = []

    async def ready(simulator: KatapultSimulator) -> None:
        seen.append(simulator.base_url)
        async with (
            aiohttp.ClientSession() as client,
            client.get(simulator.admin_url + "/interfaces") as response,
        ):
            assert len((await response.json())["interfaces"]) == 2
        stop.set()

    await asyncio.wait_for(
        testing.serve(
            SimulatorConfig(), interfaces=2, on_ready=ready, stop=stop, handle_signals=False
        ),
        10,
    )
    assert len(seen) == 1
