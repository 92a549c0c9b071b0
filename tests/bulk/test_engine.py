"""The run (``bulk._engine``): progress reports, and stopping early without leftovers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from katapult_async.bulk import PROGRESS_INTERVAL, BulkProgress, UpdateItem, bulk_update
from katapult_async.client import KatapultClient
from katapult_async.models import Outcome, UpdateResult
from katapult_async.testing import KatapultSimulator

from .helpers import bulk_tasks, by_index, collect, make_client, open_fds_to, patched, read_journal

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
        Outcome.SKIPPED: 0,
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
        # A PATCH whose sending was cancelled may still reach the simulator a moment later:
        # let it land before counting what was accepted (else it would count as the rerun's).
        await asyncio.sleep(0.2)

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
            await collect(
                bulk_update(client, updates, concurrency=8, journal=journal, confirm_horizon=0.3)
            )
        )
        assert sorted(resumed) == list(range(40))
        assert all(
            r.outcome in (Outcome.COMPLETED, Outcome.ALREADY_ASSIGNED) for r in resumed.values()
        )
        again = patched(sim)
        assert not journaled & set(again)  # nothing accepted before is PATCHed again
        # An item whose PATCH was out when the run was cancelled is confirmed: one more PATCH.
        confirmed = {r.interface_id for r in resumed.values() if r.confirmed_after_lost_response}
        assert all(count == 1 or (i in confirmed and count == 2) for i, count in again.items())
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
        bulk_update(client, source(), concurrency=4, max_tasks=0, journal=journal)
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
