"""The bulk engine against the simulator on loopback (plus a few pure and fake-client checks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from katapult_async.bulk import (
    PROGRESS_INTERVAL,
    BulkProgress,
    DuplicateItemError,
    UnconfirmedUpdateError,
    UpdateItem,
    _Journal,
    _SeenIndex,
    bulk_update,
)
from katapult_async.client import KatapultClient
from katapult_async.errors import (
    KatapultError,
    NetworkInterfaceNotFoundError,
    TaskFailedError,
    TaskTimeoutError,
)
from katapult_async.models import (
    NetworkInterfaceRef,
    Outcome,
    SpeedProfileRef,
    Task,
    TaskStatus,
    UpdateResult,
)
from katapult_async.testing import FaultKind, KatapultSimulator

PATCH_PATH = "update_speed_profile"
TASK_PATH = "/tasks/"


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[KatapultSimulator]:
    async with KatapultSimulator(task_duration=0.05, seed=7) as simulator:
        yield simulator


def make_client(sim: KatapultSimulator, **options: Any) -> KatapultClient:
    options.setdefault("poll_interval", 0.02)
    options.setdefault("max_poll_interval", 0.05)
    options.setdefault("max_retries", 2)
    return KatapultClient(sim.token, base_url=sim.base_url, **options)


@pytest.fixture
async def client(sim: KatapultSimulator) -> AsyncIterator[KatapultClient]:
    async with make_client(sim) as katapult:
        yield katapult


async def collect(results: AsyncIterator[UpdateResult]) -> list[UpdateResult]:
    return [result async for result in results]


def by_index(results: list[UpdateResult]) -> dict[int, UpdateResult]:
    table = {result.index: result for result in results}
    assert len(table) == len(results), "an index got more than one result"
    return table


def patched(sim: KatapultSimulator) -> Counter[str]:
    """How many PATCHes the simulator received per interface id."""
    return Counter(
        request.body["virtual_machine_network_interface"]["id"]
        for request in sim.requests
        if request.method == "PATCH" and PATCH_PATH in request.path
    )


def polls(sim: KatapultSimulator) -> list[str]:
    return [
        request.query.get("task[id]", request.path)
        for request in sim.requests
        if request.method == "GET" and request.path.startswith("/core/v1" + TASK_PATH)
    ]


def read_journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def bulk_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still alive that run code of the bulk module."""
    import katapult_async.bulk as bulk_module

    leftover = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_filename == bulk_module.__file__:
            leftover.append(task)
    return leftover


def open_fds_to(path: Path) -> int:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():  # pragma: no cover - not Linux
        return 0
    count = 0
    for entry in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(entry) == str(path):
                count += 1
    return count


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
        assert result.speed_profile == ("1gbps" if index < 10 else profile.id)
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
        (ids[1], "1gbps", "extra"),
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
        assert set(outcomes) <= {Outcome.COMPLETED, Outcome.ERROR}, results
        # The PATCHes whose answers were lost: the retry finds the profile assigned, but the task
        # it never saw could still fail and undo that, so they are unconfirmed, not done.
        unconfirmed = [r for r in results.values() if r.outcome is Outcome.ERROR]
        assert all(isinstance(r.error, UnconfirmedUpdateError) for r in unconfirmed), unconfirmed
        assert len(unconfirmed) <= 2
        profile = sim.profile_by_permalink("1gbps").id
        assert all(sim.interfaces[i].speed_profile_id == profile for i in ids)
        assert seen[-1].limit == 100


# --- input handling --------------------------------------------------------------------------


async def test_input_is_consumed_lazily(sim: KatapultSimulator, client: KatapultClient) -> None:
    ids = sim.add_interfaces(60)
    pulled = 0

    def source() -> Iterator[UpdateItem]:
        nonlocal pulled
        for iface in ids:
            pulled += 1
            yield (iface, "1gbps")

    concurrency = 4
    received = 0
    ahead = 0
    async for _result in bulk_update(client, source(), concurrency=concurrency, wait=False):
        received += 1
        ahead = max(ahead, pulled - received)
        if received % 10 == 0:
            await asyncio.sleep(0.02)  # a slow consumer must not make the engine read ahead
    assert received == 60
    # At most one item per worker plus the small result buffer (concurrency here).
    assert ahead <= 2 * concurrency + 1


async def test_async_iterable_input(sim: KatapultSimulator, client: KatapultClient) -> None:
    ids = sim.add_interfaces(12)

    async def source() -> AsyncIterator[UpdateItem]:
        for iface in ids:
            await asyncio.sleep(0)
            yield (iface, "500mbps")

    results = await collect(bulk_update(client, source(), concurrency=5))
    assert sorted(r.index for r in results) == list(range(12))
    assert {r.interface_id for r in results} == set(ids)
    assert all(r.outcome is Outcome.COMPLETED for r in results)


async def test_an_input_error_ends_the_run_after_items_in_progress(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    ids = sim.add_interfaces(3)

    def source() -> Iterator[UpdateItem]:
        yield from ((iface, "1gbps") for iface in ids)
        raise RuntimeError("input broke")

    results: list[UpdateResult] = []

    async def consume() -> None:
        async for result in bulk_update(client, source(), concurrency=8):
            results.append(result)

    with pytest.raises(RuntimeError, match="input broke"):
        await consume()
    assert sorted(r.index for r in results) == [0, 1, 2]
    assert bulk_tasks() == []


async def test_options_are_checked_at_call_time(client: KatapultClient) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        bulk_update(client, [], concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        bulk_update(client, [], timeout=0)
    with pytest.raises(ValueError, match="total"):
        bulk_update(client, [], total=-1)
    with pytest.raises(TypeError, match="iterable"):
        bulk_update(client, 5)  # type: ignore[arg-type]


async def test_empty_input(client: KatapultClient) -> None:
    snapshots: list[BulkProgress] = []
    assert await collect(bulk_update(client, [], on_progress=snapshots.append)) == []
    assert len(snapshots) == 1
    assert (snapshots[0].total, snapshots[0].done, snapshots[0].eta) == (0, 0, 0.0)


# --- progress --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_progress_snapshots(
    sim: KatapultSimulator, client: KatapultClient, kind: str
) -> None:
    ids = sim.add_interfaces(30)
    updates: list[Any] = [(i, "1gbps") for i in ids] + [(ids[0], "1gbps"), ("", "x")]
    snapshots: list[BulkProgress] = []

    def record(stats: BulkProgress) -> None:
        snapshots.append(stats)

    async def record_async(stats: BulkProgress) -> None:
        await asyncio.sleep(0)
        snapshots.append(stats)

    callback = record if kind == "sync" else record_async
    results = await collect(bulk_update(client, updates, concurrency=8, on_progress=callback))

    assert len(results) == 32
    final = snapshots[-1]
    assert final.total == 32
    assert final.done == 32
    assert final.started == 32
    assert final.in_flight == 0
    assert (final.completed, final.errors, final.already_assigned, final.failed) == (30, 2, 0, 0)
    assert final.eta == 0.0
    assert final.elapsed > 0
    assert final.requests_per_second is not None
    assert final.requests_per_second > 0
    assert final.rate_limited == 0
    assert dict(final.counts) == {
        Outcome.COMPLETED: 30,
        Outcome.ALREADY_ASSIGNED: 0,
        Outcome.FAILED: 0,
        Outcome.ERROR: 2,
        Outcome.SUBMITTED: 0,
    }
    with pytest.raises(TypeError):
        final.counts[Outcome.ERROR] = 0  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        final.done = 0  # type: ignore[misc]
    previous = -1
    for stats in snapshots:
        assert sum(stats.counts.values()) == stats.done
        assert stats.done + stats.in_flight <= stats.started <= 32
        assert stats.done >= previous
        previous = stats.done
    # Throttled: far fewer calls than results, but the first and the final one are there.
    assert snapshots[0].done == 1
    assert len(snapshots) <= 2 + final.elapsed / PROGRESS_INTERVAL + 1


async def test_on_progress_error_ends_the_run(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(10)

    def explode(stats: BulkProgress) -> None:
        raise RuntimeError("callback failed")

    journal = tmp_path / "run.journal.jsonl"
    with pytest.raises(RuntimeError, match="callback failed"):
        await collect(
            bulk_update(client, [(i, "1gbps") for i in ids], on_progress=explode, journal=journal)
        )
    assert bulk_tasks() == []
    assert open_fds_to(journal) == 0


async def test_eta_with_known_total(sim: KatapultSimulator, client: KatapultClient) -> None:
    ids = sim.add_interfaces(20)
    seen: list[BulkProgress] = []

    def source() -> Iterator[UpdateItem]:
        for iface in ids:
            yield (iface, "1gbps")

    await collect(bulk_update(client, source(), total=20, concurrency=2, on_progress=seen.append))
    assert all(s.total == 20 for s in seen)
    assert any(s.eta is not None and s.eta > 0 for s in seen[:-1])
    assert seen[-1].eta == 0.0


# --- journal ---------------------------------------------------------------------------------


async def test_journal_lines_and_rerun_skips_done_items(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(6, speed_profile="10gbps")
    journal = tmp_path / "bulk.journal.jsonl"
    updates: list[Any] = [(i, "1gbps") for i in ids[:5]] + [(ids[5], "10gbps"), ("", "1gbps")]

    first = by_index(await collect(bulk_update(client, updates, journal=journal)))
    assert first[5].outcome is Outcome.ALREADY_ASSIGNED

    lines = read_journal(journal)
    submitted = [line for line in lines if line["event"] == "submitted"]
    results = [line for line in lines if line["event"] == "result"]
    assert sorted(line["interface_id"] for line in submitted) == sorted(ids[:5])
    assert len(results) == 7
    for line in submitted:
        assert line["task_id"] == first[line["index"]].task.id  # type: ignore[union-attr]
    for line in results:
        assert line["outcome"] == first[line["index"]].outcome.value
        assert set(line) >= {"index", "interface_id", "speed_profile", "outcome", "task_id", "at"}
    error_line = next(line for line in results if line["outcome"] == "error")
    assert error_line["error"]
    assert error_line["error_type"] == "ValueError"
    assert sim.token not in journal.read_text()

    sim.clear_requests()
    second = by_index(await collect(bulk_update(client, updates, journal=journal)))
    assert sim.requests == []  # nothing sent: all done, and the invalid item fails validation
    for index in range(5):
        assert second[index].outcome is Outcome.COMPLETED
        assert getattr(second[index], "resumed", True) is True
        assert second[index].task is not None
        assert second[index].task.id == first[index].task.id  # type: ignore[union-attr]
    assert second[5].outcome is Outcome.ALREADY_ASSIGNED
    assert second[6].outcome is Outcome.ERROR
    # Skipped items write no new lines; the invalid one is recorded again.
    assert len(read_journal(journal)) == len(lines) + 1


async def test_journal_resumes_a_submitted_task_without_a_new_patch(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    a, b = sim.add_interfaces(2)
    task = await client.update_speed_profile(a, "1gbps")
    journal = tmp_path / "bulk.journal.jsonl"
    line = {
        "event": "submitted",
        "index": 0,
        "interface_id": a,
        "speed_profile": "1gbps",
        "task_id": task.id,
        "at": 0,
    }
    journal.write_text(json.dumps(line) + "\n")
    sim.clear_requests()

    seen: list[BulkProgress] = []
    results = by_index(
        await collect(
            bulk_update(
                client, [(a, "1gbps"), (b, "1gbps")], journal=journal, on_progress=seen.append
            )
        )
    )

    assert results[0].outcome is Outcome.COMPLETED
    assert results[0].task is not None
    assert results[0].task.id == task.id
    assert getattr(results[0], "resumed", True) is True
    assert results[1].outcome is Outcome.COMPLETED
    assert patched(sim) == Counter({b: 1})
    assert task.id in polls(sim)
    assert seen[-1].resumed == 1
    finished = [x for x in read_journal(journal) if x["event"] == "result"]
    assert {(x["interface_id"], x["outcome"]) for x in finished} == {
        (a, "completed"),
        (b, "completed"),
    }


async def test_journal_repatches_a_task_the_api_forgot(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    (a,) = sim.add_interfaces(1)
    journal = tmp_path / "bulk.journal.jsonl"
    line = {"event": "submitted", "interface_id": a, "speed_profile": "1gbps"}
    journal.write_text(json.dumps({**line, "task_id": "task_" + "0" * 16}) + "\n")
    (result,) = await collect(bulk_update(client, [(a, "1gbps")], journal=journal))
    assert result.outcome is Outcome.COMPLETED
    assert patched(sim) == Counter({a: 1})


async def test_journal_tolerates_a_truncated_last_line(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    a, b = sim.add_interfaces(2)
    journal = tmp_path / "bulk.journal.jsonl"
    done = {
        "event": "result",
        "index": 0,
        "interface_id": a,
        "speed_profile": "1gbps",
        "outcome": "completed",
        "task_id": "task_abc",
        "error": None,
        "at": 1,
    }
    cut = json.dumps({**done, "interface_id": b})[:40]
    journal.write_text("not json\n" + json.dumps(done) + "\n[1, 2]\n" + cut)

    results = by_index(
        await collect(bulk_update(client, [(a, "1gbps"), (b, "1gbps")], journal=journal))
    )

    assert results[0].outcome is Outcome.COMPLETED
    assert getattr(results[0], "resumed", True)
    assert results[1].outcome is Outcome.COMPLETED
    assert patched(sim) == Counter({b: 1})
    raw = journal.read_text().splitlines()
    assert raw[3] == cut  # the cut line was ended, not glued to the next one
    new = [json.loads(x) for x in raw[4:]]
    assert [x["event"] for x in new] == ["submitted", "result"]


async def test_journal_resume_of_a_task_that_failed(tmp_path: Path) -> None:
    journal = tmp_path / "bulk.journal.jsonl"
    async with (
        KatapultSimulator(task_duration=0.05, task_failure_rate=1.0, seed=2) as sim,
        make_client(sim) as client,
    ):
        (a,) = sim.add_interfaces(1)
        task = await client.update_speed_profile(a, "1gbps")
        await sim.wait_for_tasks(timeout=5)
        line = {"event": "submitted", "interface_id": a, "speed_profile": "1gbps"}
        journal.write_text(json.dumps({**line, "task_id": task.id}) + "\n")
        sim.clear_requests()
        (result,) = await collect(bulk_update(client, [(a, "1gbps")], journal=journal))
        assert result.outcome is Outcome.FAILED
        assert isinstance(result.error, TaskFailedError)
        assert patched(sim) == Counter()
        assert polls(sim) == [task.id]


async def test_journal_survives_unencodable_input(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    (a,) = sim.add_interfaces(1)
    journal = tmp_path / "bulk.journal.jsonl"
    updates = [("vmnet_\ud800", "1gbps"), (a, "1gbps\udfff")]
    updates.append((a, "1gbps"))
    results = by_index(await collect(bulk_update(client, updates, journal=journal)))
    assert [results[i].outcome for i in range(3)] == [
        Outcome.ERROR,
        Outcome.ERROR,
        Outcome.COMPLETED,
    ]
    lines = read_journal(journal)
    assert lines[0]["interface_id"] == "vmnet_\ud800"
    assert len(lines) == 4


async def test_task_timeout_is_an_error_and_a_rerun_polls_the_task(tmp_path: Path) -> None:
    journal = tmp_path / "bulk.journal.jsonl"
    async with KatapultSimulator(task_duration=0.6, seed=3) as sim, make_client(sim) as client:
        (a,) = sim.add_interfaces(1)
        (first,) = await collect(bulk_update(client, [(a, "1gbps")], journal=journal, timeout=0.1))
        assert first.outcome is Outcome.ERROR
        assert isinstance(first.error, TaskTimeoutError)
        assert first.task is not None
        sim.clear_requests()
        (second,) = await collect(bulk_update(client, [(a, "1gbps")], journal=journal))
        assert second.outcome is Outcome.COMPLETED
        assert second.task is not None
        assert second.task.id == first.task.id
        assert patched(sim) == Counter()


async def test_wait_false_rerun_reports_submitted_without_requests(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(3)
    journal = tmp_path / "bulk.journal.jsonl"
    updates = [(i, "1gbps") for i in ids]
    first = await collect(bulk_update(client, updates, wait=False, journal=journal))
    assert [x["event"] for x in read_journal(journal)] == ["result"] * 3
    sim.clear_requests()
    second = by_index(await collect(bulk_update(client, updates, wait=False, journal=journal)))
    assert sim.requests == []
    assert all(r.outcome is Outcome.SUBMITTED for r in second.values())
    assert {r.task.id for r in second.values() if r.task} == {r.task.id for r in first if r.task}
    # With wait=True, the same journal makes the run poll those tasks instead of PATCHing.
    third = await collect(bulk_update(client, updates, journal=journal))
    assert all(r.outcome is Outcome.COMPLETED for r in third)
    assert patched(sim) == Counter()


def test_journal_latest_line_per_interface_decides(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"

    def line(event: str, iface: str, profile: str, outcome: str | None, task: str | None) -> str:
        record: dict[str, Any] = {"event": event, "interface_id": iface, "speed_profile": profile}
        record.update(task_id=task)
        if outcome is not None:
            record["outcome"] = outcome
        return json.dumps(record)

    journal.write_text(
        "\n".join(
            [
                line("result", "vmnet_a", "1gbps", "completed", "t1"),
                line("submitted", "vmnet_a", "10gbps", None, "t2"),  # a later change wins
                line("result", "vmnet_b", "1gbps", "completed", "t3"),
                line("result", "vmnet_b", "1gbps", "error", None),  # nothing changed: ignored
                line("result", "vmnet_c", "1gbps", "completed", "t4"),
                line("submitted", "vmnet_c", "10gbps", None, "t5"),
                line("result", "vmnet_c", "10gbps", "failed", "t5"),  # forget: send again
                line("result", "vmnet_d", "1gbps", "error", "t6"),  # accepted, end unknown
                line("result", "vmnet_e", "1gbps", "bogus", "t7"),
                line("result", "vmnet_f", "1gbps", "already_assigned", None),
            ]
        )
        + "\n"
    )
    state = _Journal(str(journal))
    state.close()
    table = {k: (v.speed_profile, v.outcome, v.task_id) for k, v in state.resumable.items()}
    assert table == {
        "vmnet_a": ("10gbps", None, "t2"),
        "vmnet_b": ("1gbps", Outcome.COMPLETED, "t3"),
        "vmnet_d": ("1gbps", None, "t6"),
        "vmnet_f": ("1gbps", Outcome.ALREADY_ASSIGNED, None),
    }


# --- stopping early --------------------------------------------------------------------------


async def test_cancellation_then_resume(tmp_path: Path) -> None:
    journal = tmp_path / "bulk.journal.jsonl"
    async with (
        KatapultSimulator(task_duration=0.3, seed=5) as sim,
        make_client(sim, poll_interval=0.05, max_poll_interval=0.1) as client,
    ):
        ids = sim.add_interfaces(40)
        updates = [(i, "1gbps") for i in ids]
        got: list[UpdateResult] = []
        some_done = asyncio.Event()

        async def consume() -> None:
            async for result in bulk_update(client, updates, concurrency=8, journal=journal):
                got.append(result)
                if len(got) == 5:
                    some_done.set()

        consumer = asyncio.create_task(consume())
        await some_done.wait()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert bulk_tasks() == []
        assert open_fds_to(journal) == 0

        lines = read_journal(journal)
        accepted = {
            r.body["virtual_machine_network_interface"]["id"]
            for r in sim.requests
            if r.method == "PATCH" and r.status == 200
        }
        journaled = {x["interface_id"] for x in lines if x["event"] == "submitted"}
        # Every PATCH whose answer reached the client is in the journal (one in flight when the
        # run was cancelled may have landed unseen; a rerun gets `already_assigned` for it).
        assert len(journaled) >= len(accepted) - 8
        assert journaled <= accepted
        assert len(got) < 40

        sim.clear_requests()
        resumed = by_index(
            await collect(bulk_update(client, updates, concurrency=8, journal=journal))
        )
        assert sorted(resumed) == list(range(40))
        assert all(
            r.outcome in (Outcome.COMPLETED, Outcome.ALREADY_ASSIGNED) for r in resumed.values()
        )
        again = patched(sim)
        assert not journaled & set(again)  # nothing accepted before is PATCHed again
        assert all(count == 1 for count in again.values())
        profile = sim.profile_by_permalink("1gbps").id
        assert all(sim.interfaces[i].speed_profile_id == profile for i in ids)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_aclosing_early_cleans_up(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(30)
    journal = tmp_path / "bulk.journal.jsonl"

    async def source() -> AsyncIterator[UpdateItem]:
        for iface in ids:
            yield (iface, "1gbps")

    async with contextlib.aclosing(
        bulk_update(client, source(), concurrency=4, journal=journal)
    ) as results:
        async for _result in results:
            break
    assert bulk_tasks() == []
    assert open_fds_to(journal) == 0
    assert sum(patched(sim).values()) < 30


async def test_break_without_aclosing_is_cleaned_up_by_the_loop(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    ids = sim.add_interfaces(20)
    async for _result in bulk_update(client, [(i, "1gbps") for i in ids], concurrency=4):
        break
    for _ in range(20):  # the loop's async-generator finaliser runs aclose() as a task
        if not bulk_tasks():
            break
        await asyncio.sleep(0.01)
    assert bulk_tasks() == []


# --- pieces ----------------------------------------------------------------------------------


def test_seen_index_grows_and_finds_first_indexes() -> None:
    seen = _SeenIndex(capacity=8)
    keys = [f"vmnet_{n:016d}" for n in range(5000)]
    for index, key in enumerate(keys):
        assert seen.first_or_add(key, index) is None
    assert len(seen) == 5000
    for index, key in enumerate(keys):
        assert seen.first_or_add(key, index + 10_000) == index
    assert len(seen) == 5000


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

    async def wait_for_task(self, task: str, /, *, timeout: float | None = None) -> Task:
        raise AssertionError("not used")

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
