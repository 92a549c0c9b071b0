"""One pair's way to its result (``bulk._item``), against the simulator and a fake client."""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

import attrs
import pytest

from katapult_async.bulk import (
    BulkProgress,
    DuplicateItemError,
    UpdateItem,
    bulk_update,
)
from katapult_async.client import KatapultClient
from katapult_async.errors import KatapultError, NetworkInterfaceNotFoundError, TaskFailedError
from katapult_async.models import NetworkInterfaceRef, Outcome, SpeedProfileRef, Task, TaskStatus
from katapult_async.testing import FaultKind, KatapultSimulator

from .helpers import bulk_tasks, by_index, collect, make_client, patched, polls

# --- outcomes --------------------------------------------------------------------------------


async def test_all_items_complete_with_one_result_each(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    ids = sim.add_interfaces(20)
    profile = sim.profile_by_permalink("1gbps")
    updates: list[UpdateItem] = [(iface, "1gbps") for iface in ids[:10]]
    updates += [(NetworkInterfaceRef(iface), SpeedProfileRef(id=profile.id)) for iface in ids[10:]]

    results = await collect(bulk_update(client, updates, concurrency=4))

    table = by_index(results)
    assert sorted(table) == list(range(20))
    for index, result in table.items():
        assert result.outcome is Outcome.COMPLETED, result.error
        assert result.interface_id == ids[index]
        expected = (
            SpeedProfileRef(permalink="1gbps") if index < 10 else SpeedProfileRef(id=profile.id)
        )
        assert result.speed_profile == expected
        assert result.task is not None
        assert result.task.status is TaskStatus.COMPLETED
        assert result.error is None
    sim.settle()
    assert all(sim.interfaces[iface].speed_profile_id == profile.id for iface in ids)
    assert patched(sim) == Counter(ids)


async def test_client_method_delegates(sim: KatapultSimulator, client: KatapultClient) -> None:
    ids = sim.add_interfaces(3)
    results = await collect(client.bulk_update_speed_profiles([(i, "1gbps") for i in ids]))
    assert sorted(r.outcome for r in results) == [Outcome.COMPLETED] * 3


async def test_wait_false_reports_submitted(sim: KatapultSimulator, client: KatapultClient) -> None:
    ids = sim.add_interfaces(5)
    results = await collect(bulk_update(client, [(i, "100mbps") for i in ids], wait=False))
    assert [r.outcome for r in results] == [Outcome.SUBMITTED] * 5
    assert all(r.task is not None and r.task.id.startswith("task_") for r in results)
    assert polls(sim) == []
    profile = sim.profile_by_permalink("100mbps")
    assert all(sim.interfaces[i].speed_profile_id == profile.id for i in ids)


async def test_already_assigned(sim: KatapultSimulator, client: KatapultClient) -> None:
    ids = sim.add_interfaces(2, speed_profile="10gbps")
    results = by_index(await collect(bulk_update(client, [(ids[0], "10gbps"), (ids[1], "1gbps")])))
    assert results[0].outcome is Outcome.ALREADY_ASSIGNED
    assert results[0].error is None
    assert results[0].task is None
    assert results[1].outcome is Outcome.COMPLETED


async def test_failed_tasks() -> None:
    async with (
        KatapultSimulator(task_duration=0.05, task_failure_rate=1.0, seed=1) as sim,
        make_client(sim) as client,
    ):
        ids = sim.add_interfaces(3)
        results = await collect(bulk_update(client, [(i, "1gbps") for i in ids]))
    assert len(results) == 3
    for result in results:
        assert result.outcome is Outcome.FAILED
        assert isinstance(result.error, TaskFailedError)
        assert result.task is not None
        assert result.task.status is TaskStatus.FAILED
        assert result.task == result.error.task


async def test_api_error_is_an_error_result(sim: KatapultSimulator, client: KatapultClient) -> None:
    ids = sim.add_interfaces(1)
    missing = "vmnet_" + "x" * 16
    results = by_index(await collect(bulk_update(client, [(missing, "1gbps"), (ids[0], "1gbps")])))
    assert results[0].outcome is Outcome.ERROR
    assert isinstance(results[0].error, NetworkInterfaceNotFoundError)
    assert results[1].outcome is Outcome.COMPLETED


async def test_invalid_pairs_become_error_results(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    ids = sim.add_interfaces(3)
    updates: list[Any] = [
        (ids[0], "1gbps"),
        ("", "1gbps"),  # empty id
        (ids[1], ""),  # empty profile
        "vmnet_abc",  # not a pair (a string of two characters would be no better)
        (ids[1],),  # one element
        (ids[1], "1gbps", "10gbps", "extra"),
        (ids[1], 1000),  # profile of the wrong type
        ("vmnet bad", "1gbps"),  # whitespace
        (42, "1gbps"),
        None,
        (ids[1], "1gbps"),
        (ids[2], "10mbps"),
    ]
    results = by_index(await collect(bulk_update(client, updates, concurrency=3)))
    assert sorted(results) == list(range(len(updates)))
    for index in (0, 10, 11):
        assert results[index].outcome is Outcome.COMPLETED
    for index in range(1, 10):
        result = results[index]
        assert result.outcome is Outcome.ERROR
        assert isinstance(result.error, (TypeError, ValueError)), result.error
        assert result.task is None
    assert "interface" in str(results[1].error)
    assert results[1].interface_id == ""
    assert "speed profile" in str(results[2].error)
    assert results[2].interface_id == ids[1]
    assert "pair" in str(results[3].error)
    assert isinstance(results[6].error, TypeError)
    assert results[8].interface_id == "42"
    # Invalid items do not count as a use of the interface, and nothing was sent for them.
    assert patched(sim) == Counter({ids[0]: 1, ids[1]: 1, ids[2]: 1})


async def test_duplicates_are_sent_once(sim: KatapultSimulator, client: KatapultClient) -> None:
    a, b = sim.add_interfaces(2)
    updates: list[UpdateItem] = [(a, "1gbps"), (b, "1gbps"), (a, "1gbps"), (a, "10mbps")]
    results = by_index(await collect(bulk_update(client, updates, concurrency=4)))
    assert results[0].outcome is Outcome.COMPLETED
    assert results[1].outcome is Outcome.COMPLETED
    for index in (2, 3):
        error = results[index].error
        assert results[index].outcome is Outcome.ERROR
        assert isinstance(error, DuplicateItemError)
        assert isinstance(error, KatapultError)
        assert isinstance(error, ValueError)
        assert (error.interface_id, error.index, error.first_index) == (a, index, 0)
        assert "duplicates item 0" in str(error)
    assert patched(sim) == Counter({a: 1, b: 1})
    assert sim.interfaces[a].speed_profile_id == sim.profile_by_permalink("1gbps").id
    copy = pickle.loads(pickle.dumps(results[2].error))
    assert str(copy) == str(results[2].error)


async def test_faults_and_rate_limit_still_give_one_result_each() -> None:
    async with (
        KatapultSimulator(
            task_duration=0.05, rate_limit=100, rate_limit_window=1.0, seed=11
        ) as sim,
        make_client(sim, rate_limit_window=1.0) as client,
    ):
        ids = sim.add_interfaces(40)
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=3)
        sim.inject(FaultKind.LOST_RESPONSE, times=2, method="PATCH")
        sim.inject(FaultKind.TASK_NOT_FOUND, times=2)
        seen: list[BulkProgress] = []
        results = by_index(
            await collect(
                bulk_update(
                    client, [(i, "1gbps") for i in ids], concurrency=16, on_progress=seen.append
                )
            )
        )
        assert sorted(results) == list(range(40))
        outcomes = Counter(r.outcome for r in results.values())
        assert set(outcomes) <= {Outcome.COMPLETED, Outcome.ALREADY_ASSIGNED}, results
        # The PATCHes whose answers were lost: the retry finds the profile assigned, and the
        # engine confirms it after the (learned) task horizon with one more PATCH.
        confirmed = [r for r in results.values() if r.outcome is Outcome.ALREADY_ASSIGNED]
        assert all(r.confirmed_after_lost_response for r in confirmed), confirmed
        assert len(confirmed) <= 2
        profile = sim.profile_by_permalink("1gbps").id
        assert all(sim.interfaces[i].speed_profile_id == profile for i in ids)
        assert seen[-1].limit == 100


class _FakeClient:
    """A stand-in that fails in ways the simulator cannot be told to."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def update_speed_profile(
        self, interface: NetworkInterfaceRef, speed_profile: SpeedProfileRef, /
    ) -> Task:
        return Task(id="task_1")

    async def get_task(self, task_id: str, /) -> Task:
        raise AssertionError("not used")

    async def wait_for_task(self, task: str, /, *, task_timeout: float | None = None) -> Task:
        raise AssertionError("not used")

    async def get_network_interface(self, interface: NetworkInterfaceRef, /) -> Any:
        raise AssertionError("not used")

    def now(self) -> float:
        return 0.0

    def expected_duration(self, name: str | None, /) -> float | None:
        return None

    async def wait(
        self, task: Task, /, *, timeout: float | None = None, submitted_at: float | None = None
    ) -> Task:
        raise self.exc

    @property
    def poller(self) -> _FakeClient:
        return self

    @property
    def rate_limit(self) -> Any:
        @attrs.frozen
        class Snapshot:
            limit: int | None = None
            window: float = 60.0
            in_window: int = 0
            rate_limited: int = 0

        return Snapshot()


async def test_unexpected_errors_in_a_wait_are_item_errors() -> None:
    (result,) = await collect(bulk_update(_FakeClient(OSError("boom")), [("vmnet_a", "1gbps")]))
    assert result.outcome is Outcome.ERROR
    assert isinstance(result.error, OSError)
    assert result.task == Task(id="task_1")


async def test_base_exceptions_are_not_item_errors() -> None:
    class Stop(BaseException):
        pass

    with pytest.raises(Stop):
        await collect(bulk_update(_FakeClient(Stop()), [("vmnet_a", "1gbps")]))
    assert bulk_tasks() == []
