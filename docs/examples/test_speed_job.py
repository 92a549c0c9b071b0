"""A complete test file for a project that uses katapult-async: no conftest needed.

Run with ``pytest`` once ``katapult-async``, ``pytest`` and ``pytest-asyncio`` are installed. It
passes as written in pytest-asyncio's default ``strict`` mode and in ``asyncio_mode = "auto"``.
"""

from __future__ import annotations

import pytest

from katapult_async import KatapultClient, Outcome, ServiceUnavailableError, TaskFailedError
from katapult_async.testing import FaultKind, KatapultSimulator

# Every async test of this file runs on pytest-asyncio (needed in its default strict mode).
pytestmark = pytest.mark.asyncio


async def set_profiles(client: KatapultClient, ids: list[str], profile: str) -> dict[str, Outcome]:
    """The code under test: a user's own job that updates many interfaces."""
    pairs = [(interface_id, profile) for interface_id in ids]
    return {
        result.interface_id: result.outcome
        async for result in client.bulk_update_speed_profiles(pairs, concurrency=4)
    }


async def test_every_interface_gets_the_profile(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
) -> None:
    outcomes = await set_profiles(katapult_client, katapult_interfaces, "1gbps")
    assert set(outcomes.values()) == {Outcome.COMPLETED}
    katapult_simulator.settle()
    wanted = katapult_simulator.profile_by_permalink("1gbps").id
    for interface_id in katapult_interfaces:
        assert katapult_simulator.interfaces[interface_id].speed_profile_id == wanted


@pytest.mark.katapult(rate_limit=10, rate_limit_window=0.5, interfaces=12)
async def test_a_tight_rate_limit_gets_no_429(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
) -> None:
    await set_profiles(katapult_client, katapult_interfaces, "1gbps")
    assert katapult_simulator.stats.rate_limited <= 1  # at most the one that teaches the limit


@pytest.mark.katapult(task_polls=3, interfaces=1)
async def test_a_task_is_polled_until_it_ends(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
) -> None:
    await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps", wait=True)
    assert katapult_simulator.stats.task_polls == 3  # exact: the third read ends the task


@pytest.mark.katapult(task_polls=1, task_failure_rate=1.0, interfaces=1)
async def test_a_failed_task_is_reported(
    katapult_client: KatapultClient, katapult_interfaces: list[str]
) -> None:
    with pytest.raises(TaskFailedError):
        await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps", wait=True)


@pytest.mark.katapult(interfaces=1, client_options={"max_retries": 1})
async def test_an_outage_longer_than_the_retries(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
) -> None:
    katapult_simulator.inject(FaultKind.SERVICE_UNAVAILABLE, times=None, method="PATCH")
    with pytest.raises(ServiceUnavailableError):
        await katapult_client.update_speed_profile(katapult_interfaces[0], "1gbps")
