"""The client against the simulator over a real loopback socket: requests, models, errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

import katapult_async as ka
from katapult_async.testing import FaultKind, KatapultSimulator

TOKEN_SENTINEL = "kat-secret-token-0123456789abcdef"


@pytest.fixture
async def sim() -> AsyncIterator[KatapultSimulator]:
    async with KatapultSimulator(task_duration=0.2, seed=1) as simulator:
        simulator.add_token(TOKEN_SENTINEL)
        yield simulator


@pytest.fixture
async def client(sim: KatapultSimulator) -> AsyncIterator[ka.KatapultClient]:
    async with ka.KatapultClient(
        TOKEN_SENTINEL, base_url=sim.base_url, max_retries=2, poll_interval=0.05
    ) as c:
        yield c


async def test_update_sends_the_exact_request(
    sim: KatapultSimulator, client: ka.KatapultClient
) -> None:
    (iface,) = sim.add_interfaces(1)
    task = await client.update_speed_profile(iface, "1gbps")
    assert task.status is ka.TaskStatus.PENDING
    assert task.id.startswith("task_")
    assert task.name == "Change network interface speed profile"
    (req,) = [r for r in sim.requests if r.method == "PATCH"]
    assert req.path == (
        "/core/v1/virtual_machine_network_interfaces/virtual_machine_network_interface/"
        "update_speed_profile"
    )
    assert req.body == {
        "virtual_machine_network_interface": {"id": iface},
        "speed_profile": {"permalink": "1gbps"},
    }
    assert req.headers["Authorization"] == f"Bearer {TOKEN_SENTINEL}"
    assert req.headers["Accept"] == "application/json"
    assert req.headers["User-Agent"] == f"katapult-async/{ka.__version__}"
    assert req.query == {}


async def test_update_by_profile_id_and_get_task(
    sim: KatapultSimulator, client: ka.KatapultClient
) -> None:
    (iface,) = sim.add_interfaces(1)
    profile_id = sim.profile_by_permalink("100mbps").id
    task = await client.update_speed_profile(ka.NetworkInterfaceRef(iface), profile_id)
    patch = next(r for r in sim.requests if r.method == "PATCH")
    assert patch.body is not None
    assert patch.body["speed_profile"] == {"id": profile_id}
    fetched = await client.get_task(task.id)
    assert fetched.id == task.id
    get = [r for r in sim.requests if r.method == "GET"][-1]
    assert get.path == "/core/v1/tasks/task"
    assert get.query == {"task[id]": task.id}


async def test_wait_true_returns_the_completed_task_and_profile_is_applied(
    sim: KatapultSimulator, client: ka.KatapultClient
) -> None:
    (iface,) = sim.add_interfaces(1)
    seen: list[ka.Task] = []
    task = await client.update_speed_profile(iface, "1gbps", wait=True, on_progress=seen.append)
    assert task.status is ka.TaskStatus.COMPLETED
    assert task.progress == 100
    assert seen[-1] == task
    sim.settle()
    assert sim.interfaces[iface].speed_profile_id == sim.profile_by_permalink("1gbps").id


@pytest.mark.parametrize("envelope", ["wrapped", "flat"])
async def test_api_errors_reach_the_caller_as_classes(envelope: str) -> None:
    async with KatapultSimulator(error_envelope=envelope) as sim:  # type: ignore[arg-type]
        (iface,) = sim.add_interfaces(1, speed_profile="10gbps")
        async with ka.KatapultClient(sim.token, base_url=sim.base_url) as client:
            with pytest.raises(ka.NetworkInterfaceNotFoundError) as nf:
                await client.update_speed_profile("vmnet_doesnotexist", "1gbps")
            assert nf.value.request_id
            assert nf.value.attempts == 1
            with pytest.raises(ka.SpeedProfileNotFoundError):
                await client.update_speed_profile(iface, "nosuchprofile")
            with pytest.raises(ka.SpeedProfileAlreadyAssignedError) as already:
                await client.update_speed_profile(iface, "10gbps")
            assert already.value.status == 422
            assert not already.value.after_lost_response
            with pytest.raises(ka.TaskNotFoundError):
                await client.get_task("task_nope")
            patches = [r for r in sim.requests if r.method == "PATCH"]
            assert len(patches) == 3  # none of these were retried


async def test_invalid_token_and_scope(sim: KatapultSimulator) -> None:
    async with ka.KatapultClient("not-a-real-token", base_url=sim.base_url) as client:
        with pytest.raises(ka.InvalidAPITokenError) as info:
            await client.get_task("task_x")
        assert "not-a-real-token" not in str(info.value)
    sim.add_token("kat-read-only-token-xyz", scopes=["tasks:read"])
    async with ka.KatapultClient("kat-read-only-token-xyz", base_url=sim.base_url) as client:
        with pytest.raises(ka.ScopeNotGrantedError) as scope:
            await client.update_speed_profile(sim.add_interfaces(1)[0], "1gbps")
        assert "virtual_machines" in scope.value.scopes


async def test_html_502_is_an_api_error_after_retries(sim: KatapultSimulator) -> None:
    sim.inject(FaultKind.HTML_502, times=3)
    async with ka.KatapultClient(sim.token, base_url=sim.base_url, max_retries=0) as client:
        with pytest.raises(ka.APIError) as info:
            await client.get_task("task_x")
        assert info.value.status == 502
        assert info.value.code is None


async def test_missing_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KATAPULT_API_TOKEN", raising=False)
    with pytest.raises(ka.ConfigurationError, match="KATAPULT_API_TOKEN"):
        ka.KatapultClient()
    with pytest.raises(ka.ConfigurationError):
        ka.KatapultClient("   ")


async def test_token_from_environment(
    sim: KatapultSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KATAPULT_API_TOKEN", sim.token)
    async with ka.KatapultClient(base_url=sim.base_url) as client:
        await client.list_speed_profiles(sub_domain=sim.organization.sub_domain)
    assert sim.requests[-1].headers["Authorization"] == f"Bearer {sim.token}"


async def test_plain_http_refused_for_remote_hosts() -> None:
    with pytest.raises(ka.ConfigurationError, match="http://"):
        ka.KatapultClient("t" * 20, base_url="http://api.example.com/core/v1")
    ka.KatapultClient("t" * 20, base_url="http://api.example.com/core/v1", allow_insecure_http=True)
    ka.KatapultClient("t" * 20, base_url="http://localhost:1/core/v1")


async def test_caller_session_is_never_closed(sim: KatapultSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with ka.KatapultClient(sim.token, base_url=sim.base_url, session=session) as client:
            await client.list_speed_profiles(sub_domain=sim.organization.sub_domain)
        assert not session.closed


async def test_lists_walk_every_page(sim: KatapultSimulator, client: ka.KatapultClient) -> None:
    vm = sim.add_virtual_machine(fqdn="web-1.example.com")
    ids = sim.add_interfaces(5, vm_id=vm.id)
    by_id = await client.list_network_interfaces(virtual_machine_id=vm.id, per_page=2)
    assert [i.id for i in by_id] == ids
    by_fqdn = await client.list_network_interfaces(fqdn="web-1.example.com", per_page=2)
    assert [i.id for i in by_fqdn] == ids
    assert len([r for r in sim.requests if "network_interfaces" in r.path]) == 6
    profiles = await client.list_speed_profiles(organization_id=sim.organization.id, per_page=2)
    assert {p.permalink for p in profiles} >= {"1gbps", "100mbps", "10gbps"}
    iface = await client.get_network_interface(ids[0])
    assert iface.virtual_machine_id == vm.id
    assert iface.speed_profile is not None


async def test_token_never_in_repr_str_or_logs(
    sim: KatapultSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=1)
    async with ka.KatapultClient(TOKEN_SENTINEL, base_url=sim.base_url, max_retries=1) as client:
        text = [repr(client), str(client)]
        with pytest.raises(ka.NetworkInterfaceNotFoundError) as info:
            await client.update_speed_profile("vmnet_missing", "1gbps")
        text += [str(info.value), repr(info.value), repr(client.rate_limit)]
    text += [rec.getMessage() for rec in caplog.records]
    assert any("retrying" in t for t in text)
    for t in text:
        assert TOKEN_SENTINEL not in t
        assert TOKEN_SENTINEL[:12] not in t
