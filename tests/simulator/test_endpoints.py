"""The endpoints, in every URL style the live API accepts."""

from __future__ import annotations

import re
import time

import aiohttp
import pytest

from katapult_async.testing import KatapultSimulator, TaskOutcome

from .helpers import (
    INTERFACE,
    UPDATE,
    UPDATE_UNDERSCORE,
    call,
    error_of,
    load_reference,
    profile_id,
    update_body,
)


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
