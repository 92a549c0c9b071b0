"""Run boundaries in the journal: a finished run is never resumed, an unfinished one always is."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path

import pytest

from katapult_async.bulk import NothingToResumeError, bulk_update
from katapult_async.bulk._journal import RunRecord, dumps_run, loads_run, previous_run
from katapult_async.client import KatapultClient
from katapult_async.models import Outcome
from katapult_async.testing import KatapultSimulator

from .helpers import by_index, collect, make_client, patched, read_journal


def runs_of(journal: Path) -> list[tuple[str, int, bool | None]]:
    return [
        (line["status"], line["run"], line.get("resumed"))
        for line in read_journal(journal, runs=True)
        if line["event"] == "run"
    ]


async def test_a_finished_run_is_not_resumed_after_another_client_changed_the_interfaces(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(5, speed_profile="10gbps")
    journal = tmp_path / "ifaces.csv.journal.jsonl"
    updates = [(i, "1gbps") for i in ids]
    first = await collect(bulk_update(client, updates, journal=journal))
    assert {r.outcome for r in first} == {Outcome.COMPLETED}
    assert previous_run(journal) == "finished"

    async with make_client(sim) as other:  # later, someone else sets four of them to 500mbps
        changed = await collect(bulk_update(other, [(i, "500mbps") for i in ids[:4]]))
        assert {r.outcome for r in changed} == {Outcome.COMPLETED}
    sim.clear_requests()

    second = by_index(await collect(bulk_update(client, updates, journal=journal)))

    one_gbps = sim.profile_by_permalink("1gbps").id
    assert {sim.interfaces[i].speed_profile_id for i in ids} == {one_gbps}
    assert [second[i].outcome for i in range(5)] == [Outcome.COMPLETED] * 4 + [
        Outcome.ALREADY_ASSIGNED
    ]
    assert not any(result.resumed for result in second.values())
    assert patched(sim) == Counter(ids)
    assert runs_of(journal) == [
        ("started", 1, False),
        ("finished", 1, None),
        ("started", 2, False),
        ("finished", 2, None),
    ]


async def test_an_interrupted_run_is_resumed(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(6)
    journal = tmp_path / "j.jsonl"
    updates = [(i, "1gbps") for i in ids]
    results = bulk_update(client, updates, journal=journal, concurrency=1, max_tasks=0)
    async with contextlib.aclosing(results):
        done = [await anext(results), await anext(results)]
    assert previous_run(journal) == "interrupted"
    sim.clear_requests()

    again = by_index(await collect(bulk_update(client, updates, journal=journal)))

    assert {again[r.index].resumed for r in done} == {True}
    assert sum(r.resumed for r in again.values()) == 2
    assert not set(patched(sim)) & {r.interface_id for r in done}
    assert runs_of(journal)[-2:] == [("started", 2, True), ("finished", 2, None)]


async def test_a_journal_without_run_boundaries_is_resumed_as_before(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    a, b = sim.add_interfaces(2)
    journal = tmp_path / "old.jsonl"
    old = {"event": "result", "index": 0, "interface_id": a, "speed_profile": "1gbps"}
    journal.write_text(json.dumps({**old, "outcome": "completed", "task_id": "task_x"}) + "\n")
    assert previous_run(journal) == "unfinished"

    results = by_index(
        await collect(bulk_update(client, [(a, "1gbps"), (b, "1gbps")], journal=journal))
    )

    assert results[0].resumed
    assert results[0].outcome is Outcome.COMPLETED
    assert not results[1].resumed
    assert patched(sim) == Counter({b: 1})


async def test_resume_true_refuses_a_finished_run_and_resume_false_starts_afresh(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(3)
    journal = tmp_path / "j.jsonl"
    updates = [(i, "1gbps") for i in ids]
    with pytest.raises(NothingToResumeError) as missing:
        await collect(bulk_update(client, updates, journal=journal, resume=True))
    assert missing.value.finished is False
    await collect(bulk_update(client, updates, journal=journal))
    sim.clear_requests()
    with pytest.raises(NothingToResumeError, match="last run finished") as finished:
        await collect(bulk_update(client, updates, journal=journal, resume=True))
    assert finished.value.finished is True
    assert sim.requests == []

    # An interrupted run: resume=False starts a new run all the same.
    results = bulk_update(client, updates, journal=journal, concurrency=1, max_tasks=0)
    async with contextlib.aclosing(results):
        await anext(results)
    assert previous_run(journal) == "interrupted"
    fresh = await collect(bulk_update(client, updates, journal=journal, resume=False))
    assert not any(r.resumed for r in fresh)
    assert {r.outcome for r in fresh} == {Outcome.ALREADY_ASSIGNED}


def test_previous_run_reads_the_last_boundary(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    assert previous_run(journal) == "none"
    item = json.dumps({"event": "attempt", "interface_id": "vmnet_a", "speed_profile": "1gbps"})

    def write(*lines: str) -> str:
        journal.write_text("".join(line + "\n" for line in lines))
        return previous_run(journal)

    started = dumps_run(RunRecord(status="started", run=1, resumed=False))
    assert write() == "none"
    assert write(started) == "unfinished"
    assert write(started, item) == "unfinished"
    for status in ("finished", "halted", "interrupted"):
        end = dumps_run(RunRecord(status=status, run=1))  # type: ignore[arg-type]
        assert write(started, item, end) == status
    # Lines appended after a finished run by a version without boundaries: unfinished again.
    assert write(started, item, dumps_run(RunRecord(status="finished")), item) == "unfinished"


def test_run_lines_round_trip_and_are_no_item_records() -> None:
    record = RunRecord(status="halted", run=3, at=1.5, reason="invalid_api_token")
    line = dumps_run(record)
    assert json.loads(line) == {
        "event": "run",
        "status": "halted",
        "run": 3,
        "at": 1.5,
        "reason": "invalid_api_token",
    }
    assert loads_run(line) == record
    assert loads_run('{"event": "result"}') is None
    assert loads_run('{"event": "run", "status": "exploded"}') is None
    assert loads_run("not json") is None
