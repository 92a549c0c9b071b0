"""The request pipeline: authentication, scopes, network allow lists and rate limits."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from katapult_async.testing import KatapultSimulator
from katapult_async.testing._ratelimit import RateCounter

from .helpers import UPDATE, FakeClock, call, error_of, load_reference, update_body


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
