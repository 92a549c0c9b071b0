"""Halting a run: an error no item can escape stops it; the generic halt the rollout reuses."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from katapult_async.bulk import BulkProgress, bulk_update
from katapult_async.bulk._engine import _BulkRun
from katapult_async.bulk._options import RunOptions
from katapult_async.client import KatapultClient
from katapult_async.errors import (
    InvalidAPITokenError,
    KatapultError,
    RunAbortedError,
    RunHaltedError,
    ScopeNotGrantedError,
    UnauthorizedNetworkForAPITokenError,
)
from katapult_async.models import Outcome, UpdateResult
from katapult_async.testing import KatapultSimulator

from .helpers import by_index, collect, make_client, patched, read_journal

N = 40


def check_halted(
    results: list[UpdateResult], cause_type: type[KatapultError], concurrency: int
) -> RunAbortedError:
    """One result each; the items that were sent failed with the cause; every other is SKIPPED
    with the one RunAbortedError that carries it."""
    table = by_index(results)
    assert sorted(table) == list(range(N))
    errors = [r for r in results if r.outcome is Outcome.ERROR]
    skipped = [r for r in results if r.outcome is Outcome.SKIPPED]
    assert 1 <= len(errors) <= concurrency
    assert len(errors) + len(skipped) == N
    assert all(isinstance(r.error, cause_type) for r in errors)
    halts = {id(r.error) for r in skipped}
    assert len(halts) == 1
    halt = skipped[0].error
    assert isinstance(halt, RunAbortedError)
    assert isinstance(halt.cause, cause_type)
    assert halt.__cause__ is halt.cause
    assert halt.cause.code in halt.reason  # type: ignore[attr-defined]
    return halt


async def test_a_wrong_token_stops_the_run_and_a_rerun_with_the_right_one_resumes(
    sim: KatapultSimulator, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(N)
    journal = tmp_path / "j.jsonl"
    updates = [(i, "1gbps") for i in ids]
    snapshots: list[BulkProgress] = []
    async with KatapultClient("not-the-token", base_url=sim.base_url, max_retries=0) as wrong:
        results = await collect(
            bulk_update(
                wrong, updates, journal=journal, concurrency=4, on_progress=snapshots.append
            )
        )

    halt = check_halted(results, InvalidAPITokenError, concurrency=4)
    assert len(sim.requests) <= 4  # not one request per item
    assert snapshots[-1].halted is halt
    assert snapshots[-1].skipped == N - snapshots[-1].errors
    end = read_journal(journal, runs=True)[-1]
    assert end["event"] == "run"
    assert end["status"] == "halted"
    assert end["reason"] == halt.reason
    skipped_lines = [x for x in read_journal(journal) if x.get("outcome") == "skipped"]
    assert len(skipped_lines) == N - snapshots[-1].errors
    assert skipped_lines[0]["error_type"] == "RunAbortedError"

    sim.clear_requests()
    async with make_client(sim) as right:
        again = await collect(bulk_update(right, updates, journal=journal))
    assert {r.outcome for r in again} == {Outcome.COMPLETED}
    assert patched(sim) == Counter(ids)
    assert read_journal(journal, runs=True)[-1]["status"] == "finished"


@pytest.mark.parametrize(
    ("token_options", "cause_type"),
    [
        ({"scopes": ["tasks:read"]}, ScopeNotGrantedError),
        ({"allowed_networks": ["10.0.0.0/8"]}, UnauthorizedNetworkForAPITokenError),
    ],
)
async def test_scope_and_network_refusals_stop_the_run(
    sim: KatapultSimulator,
    token_options: dict[str, list[str]],
    cause_type: type[KatapultError],
) -> None:
    ids = sim.add_interfaces(N)
    sim.add_token("limited-token", **token_options)  # type: ignore[arg-type]
    async with KatapultClient("limited-token", base_url=sim.base_url) as limited:
        results = await collect(bulk_update(limited, [(i, "1gbps") for i in ids], concurrency=3))
    check_halted(results, cause_type, concurrency=3)


async def test_an_ordinary_error_does_not_stop_the_run(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    ids = sim.add_interfaces(3)
    updates = [
        (ids[0], "1gbps"),
        ("vmnet_unknown0000000", "1gbps"),
        *((i, "1gbps") for i in ids[1:]),
    ]
    results = by_index(await collect(bulk_update(client, updates, concurrency=1)))
    assert [results[i].outcome for i in range(4)] == [
        Outcome.COMPLETED,
        Outcome.ERROR,
        Outcome.COMPLETED,
        Outcome.COMPLETED,
    ]


async def test_the_generic_halt_lets_items_in_flight_finish_and_skips_the_rest(
    tmp_path: Path,
) -> None:
    """What a rollout halt does: ``_BulkRun.halt(error)`` after the first result."""
    async with (
        KatapultSimulator(task_duration=0.3, seed=4) as sim,
        make_client(sim) as client,
    ):
        ids = sim.add_interfaces(N)
        journal = tmp_path / "j.jsonl"
        run = _BulkRun(
            client,
            [(i, "1gbps") for i in ids],
            RunOptions(concurrency=5, max_tasks=0, journal=journal),
        )
        halt = RunHaltedError("the canary failed")
        results: list[UpdateResult] = []
        sent_at_halt = 0
        async for result in run.results():
            results.append(result)
            if not sent_at_halt:
                sent_at_halt = len(patched(sim))
            run.halt(halt)
            run.halt(RunHaltedError("a second halt is ignored"))
        await sim.wait_for_tasks(timeout=5)

    table = by_index(results)
    assert sorted(table) == list(range(N))
    sent = patched(sim)
    completed = {r.interface_id for r in results if r.outcome is Outcome.COMPLETED}
    skipped = [r for r in results if r.outcome is Outcome.SKIPPED]
    # Every item that was sent finished, its task awaited; none was sent after the halt.
    assert set(sent) == completed
    # At most the five workers' items were on their way to the client when it halted.
    assert 1 < len(completed) <= sent_at_halt + 5 < N
    assert len(skipped) == N - len(completed)
    assert all(r.error is halt for r in skipped)
    assert all(r.task is None for r in skipped)
    end = read_journal(journal, runs=True)[-1]
    assert (end["status"], end["reason"]) == ("halted", "the canary failed")
