"""Fidelity to the live API: response and error bodies against recorded ones."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import aiohttp

from katapult_async.testing import KatapultSimulator

from .helpers import INTERFACE, UPDATE, call, load_reference, profile_id, update_body


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
