"""A resumed run learns the confirmation horizon from the tasks its journal recorded."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from katapult_async._schedule import quantile
from katapult_async.bulk import DEFAULT_CONFIRM_HORIZON, bulk_update
from katapult_async.bulk._engine import _BulkRun
from katapult_async.bulk._journal import _Journal
from katapult_async.bulk._options import RunOptions
from katapult_async.client import KatapultClient
from katapult_async.models import Outcome
from katapult_async.testing import KatapultSimulator

from .helpers import by_index, collect, make_client, patched, read_journal, unfinish


async def test_a_resumed_run_confirms_an_unanswered_attempt_after_the_journaled_durations(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(4)
    journal = tmp_path / "j.jsonl"
    # A run saw three tasks end; then its process died while a fourth PATCH was out: it landed,
    # and its answer never reached the journal.
    await collect(bulk_update(client, [(i, "1gbps") for i in ids[:3]], journal=journal))
    unfinish(journal)
    lost = ids[3]
    await client.update_speed_profile(lost, "1gbps")
    attempt = {"event": "attempt", "index": 3, "interface_id": lost, "speed_profile": "1gbps"}
    with journal.open("a") as file:
        file.write(json.dumps(attempt) + "\n")
    lines = read_journal(journal)
    submitted = {line["task_id"]: line["at"] for line in lines if line["event"] == "submitted"}
    durations = [
        line["at"] - submitted[line["task_id"]] for line in lines if line["event"] == "result"
    ]
    assert len(durations) == 3
    read = _Journal(str(journal))
    read.close()
    assert list(read.durations) == pytest.approx(durations)
    sim.clear_requests()

    async with make_client(sim) as fresh:  # a new process: its poller has learned nothing
        run = _BulkRun(fresh, [(i, "1gbps") for i in ids], RunOptions(journal=journal))
        results = by_index([result async for result in run.results()])

    assert [results[i].resumed for i in range(4)] == [True, True, True, False]
    assert results[3].outcome is Outcome.ALREADY_ASSIGNED
    assert results[3].confirmed_after_lost_response
    assert patched(sim) == Counter({lost: 2})  # the resent attempt, then the confirmation
    assert run.processor is not None
    horizon = run.processor.horizon()
    assert horizon == pytest.approx(1.5 * quantile(durations, 0.99))
    assert horizon < DEFAULT_CONFIRM_HORIZON
