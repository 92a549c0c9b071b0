"""Argument and routing errors, by the argument grammar and the error catalogue."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from katapult_async.testing import KatapultSimulator

from .helpers import INTERFACE, UPDATE, call, error_of, profile_id, update_body


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
