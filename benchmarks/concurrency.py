"""Scenario ``concurrency``: throughput as concurrency grows, against 20 ms of server latency.

PATCH + GET task pairs through our client at concurrency 1, 8, 64 and 256, against a simulator in
another process that adds 20 ms before every response (``--latency 0.02``), instant tasks, no rate
limit. While latency dominates, throughput should grow nearly linearly with concurrency; it levels
off once a CPU is saturated (``cpu_busy`` = client CPU seconds / wall seconds near 1, or the
simulator's core). There is no target; the figures show that the client overlaps requests.
"""

from __future__ import annotations

from typing import Any

from benchmarks._common import Context, Measurement, ScenarioResult
from benchmarks._sim import running_simulators
from benchmarks.overhead import ours_pairs

NAME = "concurrency"
PROFILE = "1gbps"
LATENCY = 0.02


async def run(ctx: Context) -> ScenarioResult:
    levels = (1, 8, 64, 256)
    sizes = (
        {1: 10, 8: 40, 64: 128, 256: 256} if ctx.quick else {1: 100, 8: 400, 64: 2000, 256: 4000}
    )
    sim_args = ["--task-duration", "0", "--no-record", "--latency", str(LATENCY), "--seed", "5"]
    rows: list[dict[str, Any]] = []
    async with running_simulators(sim_args) as (sim,):
        await ours_pairs(sim.base_url, sim.token, await sim.add_interfaces(32), PROFILE, 8)
        for level in levels:
            pairs = sizes[level]
            ids = await sim.add_interfaces(pairs)
            with Measurement() as m:
                errors = await ours_pairs(sim.base_url, sim.token, ids, PROFILE, level)
            rows.append(
                {
                    "concurrency": level,
                    "pairs": pairs,
                    "wall_s": m.wall,
                    "pairs_per_s": pairs / m.wall,
                    "requests_per_s": 2 * pairs / m.wall,
                    "cpu_s": m.cpu,
                    "cpu_busy": m.cpu / m.wall,
                    "cpu_per_request_us": m.cpu / (2 * pairs) * 1e6,
                    "errors": errors,
                }
            )
            ctx.log(f"concurrency: {level}: {pairs / m.wall:.0f} pairs/s")
    base = rows[0]["pairs_per_s"]
    for row in rows:
        row["speedup"] = row["pairs_per_s"] / base
        row["scaling_efficiency"] = row["speedup"] / row["concurrency"]
    summary = {
        "ideal_pairs_per_s_at_1": 1 / (2 * LATENCY),
        "speedup_at_8": rows[1]["speedup"],
        "speedup_at_64": rows[2]["speedup"],
        "speedup_at_256": rows[3]["speedup"],
        "max_requests_per_s": max(row["requests_per_s"] for row in rows),
    }
    return {
        "params": {"levels": list(levels), "pairs": sizes, "latency_s": LATENCY},
        "rows": rows,
        "summary": summary,
        "targets": [],
    }
