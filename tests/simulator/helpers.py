"""Helpers for the simulator tests: requests over real loopback sockets, reference files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
from multidict import CIMultiDict

from katapult_async.testing import KatapultSimulator

UPDATE = (
    "/virtual_machine_network_interfaces/virtual_machine_network_interface/update_speed_profile"
)
UPDATE_UNDERSCORE = "/virtual_machine_network_interfaces/_/update_speed_profile"
INTERFACE = "/virtual_machine_network_interfaces/virtual_machine_network_interface"
DEFAULT = object()


def reference_file(name: str) -> Path:
    """A live-API reference file: tests/fixtures/ if copied there, else the shared folder."""
    tests = Path(__file__).parent.parent
    for folder in (
        tests / "fixtures",
        tests.parent.parent / "shared" / "katapult-api" / "fixtures",
        tests.parent.parent / "shared" / "katapult-api",
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
