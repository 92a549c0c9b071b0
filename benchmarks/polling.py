"""Scenario ``polling``: polls per task and how soon a finished task is noticed (issue 4).

300 updates with ``wait=True`` through the bulk engine (concurrency 20), tasks of 1 s ±30 %, no
rate limit, against a simulator in another process. Beside it, in the same run, fixed 1 s polling
(our client for the requests, :func:`benchmarks.baselines.fixed_poll_bulk` for the schedule).

Polls per task come from the simulator's request log; the detection latency of a task is the
time from its finish on the simulator (``/_sim/state``: ``finishes_at``, ``time.monotonic``,
which is one clock for every process on a Linux host) to the client returning it (the bulk
engine yielding its result). The first 20 tasks (by creation) are the poller's learning phase and
are left out of the per-task figures. Targets: mean polls per task <= 1.5, median detection
latency <= 0.5 s.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from benchmarks._common import Context, Measurement, ScenarioResult, percentile, target
from benchmarks._sim import SimProcess, running_simulators
from benchmarks.baselines import fixed_poll_bulk
from katapult_async import KatapultClient

NAME = "polling"
PROFILE = "1gbps"
LEARNING = 20
TARGET_POLLS = 1.5
TARGET_LATENCY = 0.5


async def _ours(sim: SimProcess, ids: list[str], concurrency: int) -> dict[str, float]:
    """Task id -> monotonic time the bulk engine handed its result to us."""
    returned: dict[str, float] = {}
    async with KatapultClient(sim.token, base_url=sim.base_url) as client:
        async for result in client.bulk_update_speed_profiles(
            ((i, PROFILE) for i in ids), concurrency=concurrency, wait=True
        ):
            if result.task is not None:
                returned[result.task.id] = time.monotonic()
    return returned


async def _fixed(sim: SimProcess, ids: list[str], concurrency: int) -> dict[str, float]:
    async with KatapultClient(sim.token, base_url=sim.base_url) as client:
        done = await fixed_poll_bulk(client, ids, PROFILE, concurrency, poll_interval=1.0)
    return {task_id: at for task_id, (at, _polls) in done.items()}


def _figures(
    side: str,
    returned: dict[str, float],
    tasks: dict[str, Any],
    polls: collections.Counter[str],
    wall: float,
    cpu: float,
    items: int,
) -> dict[str, Any]:
    ordered = sorted(returned, key=lambda task_id: tasks[task_id]["created"])
    later = ordered[LEARNING:]
    latency = [returned[t] - tasks[t]["finishes_at"] for t in later]
    return {
        "side": side,
        "items": items,
        "completed": len(returned),
        "wall_s": wall,
        "cpu_s": cpu,
        "polls": sum(polls[t] for t in ordered),
        "polls_per_task": sum(polls[t] for t in ordered) / len(ordered) if ordered else None,
        "polls_per_task_after_20": sum(polls[t] for t in later) / len(later) if later else None,
        "one_poll_share_after_20": sum(polls[t] == 1 for t in later) / len(later)
        if later
        else None,
        "latency_median_s": percentile(latency, 0.5),
        "latency_mean_s": sum(latency) / len(latency) if latency else None,
        "latency_p90_s": percentile(latency, 0.9),
        "latency_max_s": max(latency) if latency else None,
    }


async def run(ctx: Context) -> ScenarioResult:
    items = 40 if ctx.quick else 300
    duration = 0.5 if ctx.quick else 1.0
    concurrency = 20
    sim_args = ["--task-duration", str(duration), "--task-jitter", "0.3", "--seed", "7"]
    sim_args += ["--interfaces", str(2 * items)]
    rows: list[dict[str, Any]] = []
    async with running_simulators(sim_args) as (sim,):
        ids = await sim.interfaces()
        sides = (("ours", _ours, ids[:items]), ("fixed 1s", _fixed, ids[items:]))
        results: dict[str, tuple[dict[str, float], Measurement]] = {}
        for side, fn, side_ids in sides:
            with Measurement() as m:
                results[side] = (await fn(sim, side_ids, concurrency), m)
            ctx.log(f"polling: {side}: {m.wall:.1f}s")
        state = await sim.state()
        log = await sim.requests()
    tasks: dict[str, Any] = state["tasks"]
    polls: collections.Counter[str] = collections.Counter(
        entry["query"].get("task[id]", "")
        for entry in log
        if entry["method"] == "GET" and entry["path"].endswith("/tasks/task")
    )
    for side, (returned, m) in results.items():
        rows.append(_figures(side, returned, tasks, polls, m.wall, m.cpu, items))
    # per task, in creation order, for the chart (benchmarks/plot.py)
    series = {
        side: {
            "polls": [polls[t] for t in sorted(returned, key=lambda t: tasks[t]["created"])],
            "latency_s": [
                returned[t] - tasks[t]["finishes_at"]
                for t in sorted(returned, key=lambda t: tasks[t]["created"])
            ],
        }
        for side, (returned, _m) in results.items()
    }
    ours, fixed = rows
    summary = {
        "polls_per_task_after_20": ours["polls_per_task_after_20"],
        "latency_median_s": ours["latency_median_s"],
        "fixed_polls_per_task_after_20": fixed["polls_per_task_after_20"],
        "fixed_latency_median_s": fixed["latency_median_s"],
    }
    return {
        "params": {
            "items": items,
            "concurrency": concurrency,
            "task_duration_s": duration,
            "task_jitter": 0.3,
            "learning_tasks_excluded": LEARNING,
        },
        "rows": rows,
        "summary": summary,
        "targets": [
            target(
                "mean polls per task after 20", ours["polls_per_task_after_20"], "<=", TARGET_POLLS
            ),
            target("median detection latency s", ours["latency_median_s"], "<=", TARGET_LATENCY),
        ],
        "series": series,  # type: ignore[typeddict-unknown-key]
    }
