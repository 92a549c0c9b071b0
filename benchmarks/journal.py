"""Scenario ``journal``: what the journal, and ``journal_fsync=True`` (``--durable``), cost.

The same bulk run three times against one in-process simulator (instant tasks, no rate limit,
``wait=True``): no journal, a journal (flushed to the OS after every line), and a journal fsync-ed
at most every 100 ms and at the end. Reported: wall time and items per second of each, the
journal's lines, and the fsyncs made. **Target: fsync costs at most 10 % of the journaled run's
throughput** (it is bounded to 10 fsyncs a second, whatever the rate of lines).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Context, ScenarioResult, target
from katapult_async import KatapultClient
from katapult_async.testing import KatapultSimulator

TARGET_SLOWDOWN = 0.10


async def _side(
    sim: KatapultSimulator, name: str, journal: Path | None, fsync: bool, items: int
) -> dict[str, Any]:
    ids = sim.add_interfaces(items)
    calls = 0
    real_fsync = os.fsync

    def counting_fsync(fd: Any) -> None:
        nonlocal calls
        calls += 1
        real_fsync(fd)

    os.fsync = counting_fsync
    try:
        async with KatapultClient(
            sim.token, base_url=sim.base_url, poll_interval=0.05, max_poll_interval=0.1
        ) as client:
            start = time.perf_counter()
            done = 0
            async for _ in client.bulk_update_speed_profiles(
                ((i, "1gbps") for i in ids), concurrency=64, journal=journal, journal_fsync=fsync
            ):
                done += 1
            elapsed = time.perf_counter() - start
    finally:
        os.fsync = real_fsync
    lines = journal.read_bytes().count(b"\n") if journal is not None else 0  # noqa: ASYNC240 - untimed
    return {
        "side": name,
        "items": done,
        "wall_s": round(elapsed, 3),
        "items_per_s": round(done / elapsed, 1),
        "journal_lines": lines,
        "fsyncs": calls,
    }


async def run(ctx: Context) -> ScenarioResult:
    items = 300 if ctx.quick else 3000
    with tempfile.TemporaryDirectory() as tmp:
        async with KatapultSimulator(task_duration=0.0, seed=3, record_requests=False) as sim:
            rows = [
                await _side(sim, "no journal", None, False, items),
                await _side(sim, "journal", Path(tmp, "a.jsonl"), False, items),
                await _side(sim, "journal_fsync=True", Path(tmp, "b.jsonl"), True, items),
            ]
            ctx.log(f"journal: {rows}")
    plain, durable = rows[1]["items_per_s"], rows[2]["items_per_s"]
    slowdown = max(0.0, 1 - durable / plain)
    return {
        "params": {"items": items, "concurrency": 64, "task_duration_s": 0},
        "rows": rows,
        "summary": {
            "journal_items_per_s": plain,
            "fsync_items_per_s": durable,
            "fsync_slowdown": round(slowdown, 3),
            "fsyncs": rows[2]["fsyncs"],
        },
        "targets": [target("fsync slowdown", slowdown, "<=", TARGET_SLOWDOWN)],
    }
