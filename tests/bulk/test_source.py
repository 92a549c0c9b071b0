"""The input of a bulk run (``bulk._source``): lazy, sync or async, its errors; options."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from katapult_async.bulk import BulkProgress, UpdateItem, bulk_update
from katapult_async.client import KatapultClient
from katapult_async.models import Outcome, UpdateResult
from katapult_async.testing import KatapultSimulator

from .helpers import bulk_tasks, collect

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
    with pytest.raises(ValueError, match="task_timeout"):
        bulk_update(client, [], task_timeout=0)
    with pytest.raises(ValueError, match="total"):
        bulk_update(client, [], total=-1)
    with pytest.raises(TypeError, match="iterable"):
        bulk_update(client, 5)  # type: ignore[arg-type]


async def test_empty_input(client: KatapultClient) -> None:
    snapshots: list[BulkProgress] = []
    assert await collect(bulk_update(client, [], on_progress=snapshots.append)) == []
    assert len(snapshots) == 1
    assert (snapshots[0].total, snapshots[0].done, snapshots[0].eta) == (0, 0, 0.0)
