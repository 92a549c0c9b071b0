"""Confirming lost PATCH responses, typed and truthful result fields, previous profiles (issue 12)."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest

from katapult_async.bulk import DEFAULT_CONFIRM_HORIZON, UnconfirmedUpdateError, bulk_update
from katapult_async.client import KatapultClient
from katapult_async.errors import ServiceUnavailableError
from katapult_async.models import NetworkInterfaceRef, Outcome, SpeedProfileRef, TaskStatus
from katapult_async.testing import FaultKind, KatapultSimulator

from .helpers import (
    PATCH_PATH,
    by_index,
    collect,
    make_client,
    patched,
    read_journal,
    unfinish,
)

# Longer than the client's first retry backoff (up to 0.5 s): the retry of a lost PATCH reaches
# the simulator while the unseen task is still running, and so is answered already_assigned.
TASK = 0.8
HORIZON = 1.0


def patch_log(sim: KatapultSimulator, interface_id: str) -> list[tuple[float, int | None]]:
    return [
        (r.at, r.status)
        for r in sim.requests
        if r.method == "PATCH"
        and PATCH_PATH in r.path
        and r.body["virtual_machine_network_interface"]["id"] == interface_id
    ]


@pytest.fixture
def fail_first_task(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the simulator's first task fail (and revert its interface); later ones complete."""

    def install(sim: KatapultSimulator) -> None:
        world = sim._core.world
        original = world.create_task
        calls = 0

        def create_task(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls > 1:
                return original(*args, **kwargs)
            saved = world._config
            world._config = attrs.evolve(saved, task_failure_rate=1.0)
            try:
                return original(*args, **kwargs)
            finally:
                world._config = saved

        monkeypatch.setattr(world, "create_task", create_task)

    return install


# --- lost responses are confirmed ------------------------------------------------------------


async def test_lost_response_whose_task_completes_is_confirmed_already_assigned() -> None:
    async with KatapultSimulator(task_duration=TASK, seed=5) as sim, make_client(sim) as client:
        (a,) = sim.add_interfaces(1)
        sim.inject(FaultKind.LOST_RESPONSE, times=1, method="PATCH")
        (result,) = await collect(bulk_update(client, [(a, "1gbps")], confirm_horizon=HORIZON))
        assert result.outcome is Outcome.ALREADY_ASSIGNED
        assert result.confirmed_after_lost_response is True
        assert result.error is None
        log = patch_log(sim, a)
        # The lost one, its retry (already assigned), and the one confirming PATCH after the horizon.
        assert [status for _, status in log] == [None, 422, 422]
        assert log[2][0] - log[1][0] >= HORIZON
        assert sim.interfaces[a].speed_profile_id == sim.profile_by_permalink("1gbps").id


async def test_lost_response_whose_task_fails_and_reverts_follows_a_new_task(
    fail_first_task: Any,
) -> None:
    async with KatapultSimulator(task_duration=TASK, seed=5) as sim, make_client(sim) as client:
        fail_first_task(sim)
        (a,) = sim.add_interfaces(1)
        sim.inject(FaultKind.LOST_RESPONSE, times=1, method="PATCH")
        (result,) = await collect(bulk_update(client, [(a, "1gbps")], confirm_horizon=HORIZON))
        assert result.outcome is Outcome.COMPLETED
        assert result.confirmed_after_lost_response is True
        assert result.task is not None
        assert result.task.status is TaskStatus.COMPLETED
        assert [status for _, status in patch_log(sim, a)] == [None, 422, 200]
        tasks = [t for t in sim.tasks.values() if t.interface_id == a]
        assert [t.outcome.value for t in tasks] == ["failed", "completed"]
        assert result.task.id == tasks[1].id
        await sim.wait_for_tasks(timeout=5)
        assert sim.interfaces[a].speed_profile_id == sim.profile_by_permalink("1gbps").id


async def test_a_confirmation_that_fails_leaves_the_item_unconfirmed() -> None:
    async with (
        KatapultSimulator(task_duration=TASK, seed=5) as sim,
        make_client(sim, max_retries=1) as client,
    ):
        (a,) = sim.add_interfaces(1)
        sim.inject(FaultKind.LOST_RESPONSE, times=1, method="PATCH")
        run = asyncio.ensure_future(
            collect(bulk_update(client, [(a, "1gbps")], confirm_horizon=HORIZON))
        )
        while len(patch_log(sim, a)) < 2:  # noqa: ASYNC110 - polling the simulator's log
            await asyncio.sleep(0.01)  # (the lost PATCH and its retry: now fault the rest)
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=-1, method="PATCH")
        (result,) = await run
        assert result.outcome is Outcome.ERROR
        assert isinstance(result.error, UnconfirmedUpdateError)
        assert isinstance(result.error.__cause__, ServiceUnavailableError)
        assert result.confirmed_after_lost_response is False


async def test_journal_attempt_without_an_answer_is_confirmed_on_resume(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    a, b = sim.add_interfaces(2)
    await client.update_speed_profile(a, "1gbps")  # a's attempt landed; b's never did
    journal = tmp_path / "bulk.journal.jsonl"
    journal.write_text(
        "".join(
            json.dumps(
                {"event": "attempt", "index": i, "interface_id": x, "speed_profile": "1gbps"}
            )
            + "\n"
            for i, x in enumerate((a, b))
        )
    )
    sim.clear_requests()
    results = by_index(
        await collect(
            bulk_update(client, [(a, "1gbps"), (b, "1gbps")], journal=journal, confirm_horizon=0.2)
        )
    )
    assert results[0].outcome is Outcome.ALREADY_ASSIGNED
    assert results[0].confirmed_after_lost_response is True
    assert results[1].outcome is Outcome.COMPLETED
    assert results[1].confirmed_after_lost_response is False
    assert patched(sim) == Counter({a: 2, b: 1})
    lines = [x for x in read_journal(journal)[2:] if x["interface_id"] == a]
    assert [x["event"] for x in lines] == ["attempt", "attempt", "result"]
    assert lines[-1]["confirmed_after_lost_response"] is True
    # A resumed run takes the confirmed result from the journal, flag included, with no request.
    unfinish(journal)
    sim.clear_requests()
    again = by_index(await collect(bulk_update(client, [(a, "1gbps")], journal=journal)))
    assert again[0].resumed
    assert again[0].confirmed_after_lost_response
    assert sim.requests == []


def test_default_horizon() -> None:
    assert DEFAULT_CONFIRM_HORIZON == 10.0
    with pytest.raises(ValueError, match="confirm_horizon"):
        bulk_update(object(), [], confirm_horizon=-1)  # type: ignore[arg-type]


# --- typed, truthful result fields -----------------------------------------------------------


async def test_speed_profile_is_a_ref_for_every_input_form(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(6)
    nsp = sim.profile_by_permalink("1gbps").id
    updates: list[Any] = [
        (ids[0], "1gbps"),
        (ids[1], nsp),
        (NetworkInterfaceRef(ids[2]), SpeedProfileRef(id=nsp)),
        (ids[3], SpeedProfileRef(permalink="1gbps")),
        [ids[4], "1gbps", "10gbps"],
        (ids[0], "100mbps"),  # a duplicate
        ("vmnet bad", "1gbps"),  # a bad interface, a good profile
        (ids[5], ""),  # a bad profile
        "not a pair",
        (ids[5], 1000),
    ]
    journal = tmp_path / "j.jsonl"
    results = by_index(await collect(bulk_update(client, updates, journal=journal)))
    permalink, by_id = SpeedProfileRef(permalink="1gbps"), SpeedProfileRef(id=nsp)
    expected = [permalink, by_id, by_id, permalink, permalink]
    expected += [SpeedProfileRef(permalink="100mbps"), permalink, None, None, None]
    assert [results[i].speed_profile for i in range(len(updates))] == expected
    # A resumed result is typed the same way, and carries the task the journal recorded, whole.
    unfinish(journal)
    resumed = by_index(await collect(bulk_update(client, updates[:5], journal=journal)))
    for index in range(5):
        assert resumed[index].resumed
        assert resumed[index].speed_profile == expected[index]
        assert resumed[index].task == results[index].task
        assert resumed[index].task is not None
        assert resumed[index].task.name


async def test_old_journal_lines_are_still_read(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    (a,) = sim.add_interfaces(1)
    journal = tmp_path / "old.jsonl"
    line = {
        "event": "result",
        "index": 0,
        "interface_id": a,
        "speed_profile": "1gbps",
        "outcome": "completed",
        "task_id": "task_abc",
        "error": None,
        "error_type": None,
        "at": 1.0,
    }
    journal.write_text(json.dumps(line) + "\n")
    (result,) = await collect(bulk_update(client, [(a, "1gbps")], journal=journal))
    assert result.resumed
    assert result.outcome is Outcome.COMPLETED
    assert result.task is not None
    assert result.task.id == "task_abc"
    assert result.previous_speed_profile is None


async def test_deprecated_timeout_spellings_warn(sim: KatapultSimulator, tmp_path: Path) -> None:
    (a, b) = sim.add_interfaces(2)
    with pytest.warns(DeprecationWarning, match="request_timeout"):
        client = KatapultClient(sim.token, base_url=sim.base_url, timeout=7.0)
    async with client:
        assert client.config.request_timeout == 7.0
        with pytest.warns(DeprecationWarning, match="request_timeout"):
            assert client.config.timeout == 7.0
        with pytest.warns(DeprecationWarning, match="task_timeout"):
            task = await client.update_speed_profile(a, "1gbps", wait=True, timeout=5.0)
        with pytest.warns(DeprecationWarning, match="task_timeout"):
            await client.wait_for_task(task, timeout=5.0)
        with pytest.warns(DeprecationWarning, match="task_timeout"):
            run = client.bulk_update_speed_profiles([(b, "1gbps")], timeout=5.0)
        assert [r.outcome for r in await collect(run)] == [Outcome.COMPLETED]
        with pytest.warns(DeprecationWarning, match="task_timeout"):
            bulk_update(client, [], timeout=5.0)
        with pytest.warns(DeprecationWarning, match="task_timeout"), pytest.raises(TypeError):
            bulk_update(client, [], timeout=5.0, task_timeout=5.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            await client.wait_for_task(task, task_timeout=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with KatapultClient(sim.token, base_url=sim.base_url, request_timeout=3.0) as new:
            assert new.config.request_timeout == 3.0


# --- previous profiles -----------------------------------------------------------------------


async def test_triples_and_record_previous(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(4, speed_profile="10gbps")
    ten = sim.profile_by_permalink("10gbps").id
    journal = tmp_path / "j.jsonl"
    updates: list[Any] = [
        (ids[0], "1gbps", "10gbps"),  # given: no read
        (ids[1], "1gbps"),  # read
        (ids[2], "1gbps", None),  # read
        (ids[3], "1gbps", SpeedProfileRef(id=ten)),
    ]
    results = by_index(
        await collect(bulk_update(client, updates, journal=journal, record_previous=True))
    )
    assert results[0].previous_speed_profile == SpeedProfileRef(permalink="10gbps")
    assert results[1].previous_speed_profile == SpeedProfileRef(id=ten)
    assert results[2].previous_speed_profile == SpeedProfileRef(id=ten)
    assert results[3].previous_speed_profile == SpeedProfileRef(id=ten)
    assert all(r.outcome is Outcome.COMPLETED for r in results.values())
    reads = [r for r in sim.requests if r.method == "GET" and "network_interface" in r.path]
    assert len(reads) == 2
    for line in read_journal(journal):
        expected = "10gbps" if line["interface_id"] == ids[0] else ten
        assert line["previous_speed_profile"] == expected, line
    # A resumed result carries the recorded previous profile; no read, no PATCH.
    unfinish(journal)
    sim.clear_requests()
    again = by_index(
        await collect(bulk_update(client, updates[1:2], journal=journal, record_previous=True))
    )
    assert again[0].resumed
    assert again[0].previous_speed_profile == SpeedProfileRef(id=ten)
    assert sim.requests == []


async def test_without_record_previous_nothing_is_read(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    ids = sim.add_interfaces(2)
    results = by_index(await collect(bulk_update(client, [(ids[0], "1gbps"), (ids[1], "1gbps")])))
    assert all(r.previous_speed_profile is None for r in results.values())
    assert all(r.method == "PATCH" or "/tasks/" in r.path for r in sim.requests)


async def test_record_previous_read_error_is_the_items_error(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    missing = "vmnet_" + "x" * 16
    (result,) = await collect(bulk_update(client, [(missing, "1gbps")], record_previous=True))
    assert result.outcome is Outcome.ERROR
    assert patched(sim) == Counter()
