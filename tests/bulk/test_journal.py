"""The journal (``bulk._journal``): its lines, and resuming from them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest

from katapult_async.bulk import BulkProgress, bulk_update
from katapult_async.bulk._journal import JournalRecord, _Journal, dumps, loads
from katapult_async.client import KatapultClient
from katapult_async.errors import TaskFailedError, TaskTimeoutError
from katapult_async.models import Outcome, Task, UpdateResult
from katapult_async.testing import KatapultSimulator

from .helpers import by_index, collect, make_client, patched, polls, read_journal, unfinish

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

    unfinish(journal)  # killed after its last result: the rerun resumes the run
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
    assert [x["event"] for x in new] == ["run", "attempt", "submitted", "result", "run"]


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
    assert [line["event"] for line in lines] == [
        "result",
        "result",
        "attempt",
        "submitted",
        "result",
    ]


async def test_task_timeout_is_an_error_and_a_resumed_run_polls_the_task(tmp_path: Path) -> None:
    journal = tmp_path / "bulk.journal.jsonl"
    async with KatapultSimulator(task_duration=0.6, seed=3) as sim, make_client(sim) as client:
        (a,) = sim.add_interfaces(1)
        (first,) = await collect(
            bulk_update(client, [(a, "1gbps")], journal=journal, task_timeout=0.1)
        )
        assert first.outcome is Outcome.ERROR
        assert isinstance(first.error, TaskTimeoutError)
        assert first.task is not None
        unfinish(journal)
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
    assert sorted(x["event"] for x in read_journal(journal)) == ["attempt"] * 3 + ["result"] * 3
    unfinish(journal)
    sim.clear_requests()
    second = by_index(await collect(bulk_update(client, updates, wait=False, journal=journal)))
    assert sim.requests == []
    assert all(r.outcome is Outcome.SUBMITTED for r in second.values())
    assert {r.task.id for r in second.values() if r.task} == {r.task.id for r in first if r.task}
    # With wait=True, the same journal makes the run poll those tasks instead of PATCHing.
    unfinish(journal)
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


# --- the record ------------------------------------------------------------------------------


def test_journal_record_lines_keep_the_format() -> None:
    error = ValueError("bad")
    result = UpdateResult("vmnet_a", "1gbps", Outcome.ERROR, error=error, index=3)
    record = JournalRecord.from_result(result, "task_a", at=1.5)
    line = dumps(record)
    assert list(json.loads(line)) == [
        "event",
        "index",
        "interface_id",
        "speed_profile",
        "outcome",
        "task_id",
        "error",
        "error_type",
        "at",
    ]
    assert json.loads(line)["error_type"] == "ValueError"
    assert loads(line) == record
    assert loads(line.encode()) == record
    submitted = JournalRecord(
        event="submitted", index=3, interface_id="vmnet_a", speed_profile="1gbps", task_id="t"
    )
    assert list(json.loads(dumps(submitted))) == [
        "event",
        "index",
        "interface_id",
        "speed_profile",
        "task_id",
        "at",
    ]
    assert loads(dumps(submitted)) == submitted
    assert dumps(
        JournalRecord.from_result(UpdateResult("vmnet_\ud800", "x", Outcome.ERROR))
    ).isascii()


def test_journal_record_takes_the_task_id_from_the_result_by_default() -> None:
    done = UpdateResult("vmnet_a", "1gbps", Outcome.COMPLETED, task=Task(id="task_a"), index=0)
    assert JournalRecord.from_result(done).task_id == "task_a"
    assert JournalRecord.from_result(done, "task_b").task_id == "task_b"
    assert JournalRecord.from_result(attrs.evolve(done, task=None)).task_id is None
    assert JournalRecord.from_result(done).outcome is Outcome.COMPLETED
    with pytest.raises(ValueError):
        JournalRecord(event="result", interface_id="vmnet_a", speed_profile="1gbps")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json",
        '{"event": "result", "interface_id": "vmnet_a"',
        "[1, 2]",
        '{"event": "other", "interface_id": "vmnet_a", "speed_profile": "1gbps"}',
        '{"interface_id": "vmnet_a", "speed_profile": "1gbps", "outcome": "completed"}',
        '{"event": "result", "interface_id": "vmnet_a", "speed_profile": "1gbps"}',
        '{"event": "result", "interface_id": "vmnet_a", "speed_profile": "1gbps", "outcome": "x"}',
        '{"event": "submitted", "interface_id": 5, "speed_profile": "1gbps"}',
        '{"event": "submitted", "interface_id": "vmnet_a", "speed_profile": "1gbps", "task_id": 1}',
    ],
)
def test_loads_skips_lines_that_hold_no_record(line: str) -> None:
    assert loads(line) is None


def test_loads_reads_a_submitted_line_without_its_result_keys() -> None:
    line = {"event": "submitted", "interface_id": "vmnet_a", "speed_profile": "1gbps"}
    record = loads(json.dumps({**line, "outcome": "bogus", "error": 1, "new_key": [1]}))
    assert record == JournalRecord(event="submitted", interface_id="vmnet_a", speed_profile="1gbps")
