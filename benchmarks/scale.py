"""Scenario ``scale``: 100,000 interfaces streamed through the bulk engine in flat memory.

The pairs come from a generator reading interface ids one line at a time from a file, through
``bulk_update_speed_profiles`` with concurrency 256 and ``wait=True``, against a simulator in
another process (``--no-record``, no rate limit, instant tasks). Each run is a fresh
``python -m benchmarks.worker`` process, so its peak RSS is that run's own: 10,000 items, then
100,000. The worker also reports its peak RSS after imports and client set-up, before the run.
Targets (issue 13): at 100k, peak RSS <= 64 MiB (and about the same as at 10k: memory must not
grow with the input) and >= 3,000 items/s. The baseline, in the same run: the bare aiohttp loop
of ``overhead`` (``baselines.bare_pairs``) at the same concurrency over 20,000 fresh interfaces,
PATCH + GET pairs per second, the most any aiohttp client doing this work can reach here.

The peak is ``VmHWM`` (``/proc/self/status``), not ``ru_maxrss``: on Linux a spawned child's
``ru_maxrss`` starts at its parent's high-water mark (the benchmark process, holding 110,000 ids),
which would hide the child's own figure. ``ru_maxrss`` is reported beside it.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from benchmarks._common import Context, Measurement, ScenarioResult, target
from benchmarks._sim import SimProcess, WorkerProcess, running_simulators
from benchmarks.baselines import bare_pairs

NAME = "scale"
TARGET_RSS_MIB = 64.0  # issue 13: keep it at most 64 MiB (and flat)
TARGET_ITEMS_PER_S = 3000.0  # issue 13: keep at least 3,000 items/s at 100k
CONCURRENCY = 256
BARE_PAIRS = 20_000  # the baseline's pairs: enough for a steady rate
BARE_PAIRS_QUICK = 1_000


async def _worker_run(sim: SimProcess, path: str, offset: int, count: int) -> dict[str, Any]:
    worker = WorkerProcess(
        [
            "--base-url",
            sim.base_url,
            "--token",
            sim.token,
            "--ids-file",
            path,
            "--offset",
            str(offset),
            "--count",
            str(count),
            "--concurrency",
            str(CONCURRENCY),
        ]
    )
    await worker.start()
    return await worker.finish(timeout=600.0)


async def run(ctx: Context) -> ScenarioResult:
    sizes = (1_000, 2_000) if ctx.quick else (10_000, 100_000)
    sim_args = ["--task-duration", "0", "--no-record", "--seed", "3"]
    sim_args += ["--interfaces", str(sum(sizes))]
    rows: list[dict[str, Any]] = []
    fd, path = tempfile.mkstemp(prefix="katapult-bench-ids-", suffix=".txt")
    try:
        async with running_simulators(sim_args) as (sim,):
            ids = await sim.interfaces()
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write("\n".join(ids) + "\n")
            del ids
            offset = 0
            for size in sizes:
                result = await _worker_run(sim, path, offset, size)
                offset += size
                outcomes = result["outcomes"]
                rows.append(
                    {
                        "items": size,
                        "results": result["items"],
                        "completed": outcomes.get("completed", 0),
                        "errors": result["items"] - outcomes.get("completed", 0),
                        "wall_s": result["wall_s"],
                        "items_per_s": result["items_per_s"],
                        "cpu_s": result["cpu_s"],
                        "cpu_per_item_us": result["cpu_s"] / size * 1e6,
                        "polls_per_item": result["polls"] / size,
                        "rss_before_mib": result["rss_before_mib"],
                        "rss_peak_mib": result["rss_peak_mib"],
                        "rss_growth_mib": result["rss_peak_mib"] - result["rss_before_mib"],
                        "ru_maxrss_mib": result["ru_maxrss_mib"],
                    }
                )
                ctx.log(
                    f"scale: {size} items: {result['wall_s']:.1f}s, "
                    f"{result['items_per_s']:.0f} items/s, peak RSS {result['rss_peak_mib']:.1f} MiB"
                )
            # The baseline in the same run: the bare aiohttp loop's PATCH + GET pairs per second
            # at the same concurrency (no limiter, no models, no poller, no bulk engine).
            bare_ids = await sim.add_interfaces(BARE_PAIRS_QUICK if ctx.quick else BARE_PAIRS)
            with Measurement() as bare:
                bare_errors = await bare_pairs(
                    sim.base_url, sim.token, bare_ids, "1gbps", CONCURRENCY
                )
            bare_rate = len(bare_ids) / bare.wall
            ctx.log(f"scale: bare aiohttp loop: {bare_rate:.0f} pairs/s")
    finally:
        os.unlink(path)
    small, large = rows
    summary = {
        "peak_rss_mib_small": small["rss_peak_mib"],
        "peak_rss_mib_large": large["rss_peak_mib"],
        "rss_growth_large_over_small_mib": large["rss_peak_mib"] - small["rss_peak_mib"],
        "items_per_s_large": large["items_per_s"],
        "bare_pairs_per_s": bare_rate,
        "bare_cpu_per_pair_us": bare.cpu / len(bare_ids) * 1e6,
        "bare_errors": bare_errors,
        "items_per_s_large_over_bare": large["items_per_s"] / bare_rate,
    }
    return {
        "params": {
            "sizes": list(sizes),
            "concurrency": CONCURRENCY,
            "wait": True,
            "input": "generator over a file of ids",
            "simulator": " ".join(sim_args),
            "bare_pairs": len(bare_ids),
        },
        "rows": rows,
        "summary": summary,
        "targets": [
            target(
                f"peak RSS MiB at {sizes[-1]} items", large["rss_peak_mib"], "<=", TARGET_RSS_MIB
            ),
            target(f"items/s at {sizes[-1]} items", large["items_per_s"], ">=", TARGET_ITEMS_PER_S),
        ],
    }
