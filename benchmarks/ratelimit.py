"""Scenario ``ratelimit``: the reference workload of issue 13, against a limit it must learn.

**Reference workload**: 300 interfaces, a limit of 100 requests per 2 s window counted in fixed
windows (aligned to the simulator's clock, a phase the client is not told) and, separately, in a
sliding window; tasks lasting uniformly 0.5-1.5 s (1 s ±50 %), polled for real; concurrency 50;
the client is told the window length (``rate_limit_window=2``) but not the limit, which it learns
from the ``X-Ratelimit-*`` headers, or from the 429 body alone when the headers are off. Also, in
the same run: one case with ``rate_limit=100`` given; 1,000 interfaces in each window model; two
client processes sharing one token, 150 interfaces each, started together (this process and a
``python -m benchmarks.worker``); and the naive baseline (:func:`benchmarks.baselines.naive_bulk`:
``backoff.expo`` on 429, polling every second, ignoring what the server says about the limit).

The bound is the time the requests need at the permitted rate, at two per item (one PATCH, one
poll): ``2 * items / (limit / window)`` = 12 s for 300 items, 40 s for 1,000. Efficiency is bound /
wall; utilisation is requests sent / (wall * permitted rate). Targets (issue 13): efficiency >= 0.93
(fixed) / >= 0.92 (sliding) with headers and 0 × 429; >= 0.90 and <= 1 × 429 from the 429 body
alone; <= 1.05 polls per task when the budget binds; >= 0.96 at 1,000 items; two processes: combined
efficiency >= 0.92 and 0 × 429.
"""

from __future__ import annotations

import asyncio
import collections
import os
import tempfile
from typing import Any

from benchmarks._common import Context, Measurement, ScenarioResult, Target, target
from benchmarks._sim import SimProcess, WorkerProcess, running_simulators
from benchmarks.baselines import naive_bulk
from katapult_async import KatapultClient

NAME = "ratelimit"
PROFILE = "1gbps"
TASK_JITTER = 0.5  # tasks of 1 s ±50 %: uniformly 0.5-1.5 s
TARGET_POLLS = 1.05  # polls per task, when the budget binds (the headers cases)


class Case:
    """One run: which client, how the simulator counts, whether it sends headers."""

    def __init__(
        self,
        name: str,
        client: str,
        mode: str,
        headers: bool,
        *,
        limit_given: bool = False,
        processes: int = 1,
        scale: int = 1,
        efficiency: float = 0.0,
    ) -> None:
        self.name = name
        self.client = client
        self.mode = mode
        self.headers = headers
        self.limit_given = limit_given
        self.processes = processes
        self.scale = scale  # items multiplied by this (the 1,000-interface cases: 10/3)
        self.efficiency = efficiency  # the target, 0 for none

    def sim_args(
        self, items: int, limit: int, window: float, duration: float, seed: int
    ) -> list[str]:
        args = ["--rate-limit", str(limit), "--window", str(window), "--mode", self.mode]
        args += ["--interfaces", str(items), "--task-duration", str(duration)]
        args += ["--task-jitter", str(TASK_JITTER), "--seed", str(seed)]
        args += ["--task-progress", "live"]  # running progress a flat 5, as recorded live
        if self.name not in CHARTED_CASES:  # the charted ones keep a log for benchmarks/plot.py
            args += ["--no-record"]
        return args + ([] if self.headers else ["--no-rate-headers"])


CHARTED_CASES = ("fixed+headers", "naive, fixed")
"""The cases whose request log benchmarks/plot.py draws (``--plot``)."""

CASES = (
    Case("fixed+headers", "ours", "fixed", True, efficiency=0.93),
    Case("sliding+headers", "ours", "sliding", True, efficiency=0.92),
    Case("fixed, 429 body only", "ours", "fixed", False, efficiency=0.90),
    Case("sliding, 429 body only", "ours", "sliding", False, efficiency=0.90),
    Case("fixed, 429 body only, limit given", "ours", "fixed", False, limit_given=True),
    Case("1000 items, fixed+headers", "ours", "fixed", True, scale=10, efficiency=0.96),
    Case("1000 items, sliding+headers", "ours", "sliding", True, scale=10, efficiency=0.96),
    Case("2 processes, fixed+headers", "ours", "fixed", True, processes=2, efficiency=0.92),
    Case("2 processes, sliding+headers", "ours", "sliding", True, processes=2, efficiency=0.92),
    Case("naive, fixed", "naive", "fixed", True),
    Case("naive, sliding", "naive", "sliding", True),
)


async def _ours(
    sim: SimProcess,
    ids: list[str],
    *,
    limit: int | None,
    window: float,
    concurrency: int,
) -> tuple[Measurement, collections.Counter[str]]:
    outcomes: collections.Counter[str] = collections.Counter()
    async with KatapultClient(
        sim.token, base_url=sim.base_url, rate_limit=limit, rate_limit_window=window
    ) as client:
        with Measurement() as m:
            async for result in client.bulk_update_speed_profiles(
                ((i, PROFILE) for i in ids), concurrency=concurrency, wait=True
            ):
                outcomes[result.outcome.value] += 1
    return m, outcomes


async def _two_processes(
    sim: SimProcess, ids: list[str], *, window: float, concurrency: int
) -> tuple[float, float, collections.Counter[str]]:
    """Half the items here, half in a worker process, started together; (wall, cpu, outcomes)."""
    half = len(ids) // 2
    fd, path = tempfile.mkstemp(prefix="katapult-bench-ids-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(ids[half:]) + "\n")
        worker = WorkerProcess(
            [
                "--base-url",
                sim.base_url,
                "--token",
                sim.token,
                "--ids-file",
                path,
                "--concurrency",
                str(concurrency // 2),
                "--window",
                str(window),
            ],
            sync_start=True,
        )
        await worker.start()
        try:
            worker.go()
            m, outcomes = await _ours(
                sim, ids[:half], limit=None, window=window, concurrency=concurrency // 2
            )
            other = await worker.finish()
        finally:
            await worker.kill()
    finally:
        os.unlink(path)
    outcomes.update(other["outcomes"])
    wall = max(m.end, other["end"]) - min(m.start, other["start"])
    return wall, m.cpu + other["cpu_s"], outcomes


async def _run_case(
    case: Case,
    sim: SimProcess,
    *,
    items: int,
    limit: int,
    window: float,
    concurrency: int,
    log: Any,
) -> dict[str, Any]:
    ids = await sim.interfaces()
    assert len(ids) == items
    if case.client == "naive":
        with Measurement() as m:
            naive = await naive_bulk(sim.base_url, sim.token, ids, PROFILE, concurrency)
        wall, cpu = m.wall, m.cpu
        outcomes = {"completed": naive.completed, "failed": naive.failed, "error": naive.errors}
    elif case.processes == 2:
        wall, cpu, counter = await _two_processes(sim, ids, window=window, concurrency=concurrency)
        outcomes = dict(counter)
    else:
        m, counter = await _ours(
            sim,
            ids,
            limit=limit if case.limit_given else None,
            window=window,
            concurrency=concurrency,
        )
        wall, cpu, outcomes = m.wall, m.cpu, dict(counter)
    stats = await sim.stats()
    # request start times and statuses for the chart (benchmarks/plot.py); run() moves them out
    log_entries = await sim.requests() if case.processes == 1 else []
    first = min((entry["at"] for entry in log_entries), default=0.0)
    series = {
        "at": [round(entry["at"] - first, 4) for entry in log_entries],
        "status": [entry["status"] for entry in log_entries],
    }
    rate = limit / window
    bound = 2 * items / rate
    requests = stats["total"]
    tasks = stats["tasks_created"]
    row = {
        "case": case.name,
        "client": case.client,
        "mode": case.mode,
        "headers": case.headers,
        "limit_given": case.limit_given,
        "processes": case.processes,
        "items": items,
        "wall_s": wall,
        "bound_s": bound,
        "requests": requests,
        "utilisation": requests / (wall * rate),
        "efficiency": bound / wall,
        "rate_limited": stats["rate_limited"],
        "polls_per_task": stats["task_polls"] / tasks if tasks else None,
        "completed": outcomes.get("completed", 0),
        "errors": sum(n for k, n in outcomes.items() if k != "completed"),
        "cpu_s": cpu,
        "series": series,
    }
    log(
        f"ratelimit: {case.name}: wall {wall:.1f}s (bound {bound:.1f}s), {requests} requests, "
        f"{row['rate_limited']} 429s, {row['polls_per_task'] or 0:.2f} polls/task"
    )
    return row


def _targets(rows: list[dict[str, Any]]) -> list[Target]:
    targets: list[Target] = []
    for case, row in zip(CASES, rows, strict=True):
        if row["client"] != "ours":
            continue
        name = row["case"]
        if case.efficiency:
            targets.append(target(f"{name}: efficiency", row["efficiency"], ">=", case.efficiency))
        allowed = 0 if row["headers"] or row["limit_given"] else 1
        targets.append(target(f"{name}: 429s", row["rate_limited"], "<=", allowed))
        if row["headers"] and case.scale == 1 and case.processes == 1:
            polls = row["polls_per_task"]
            targets.append(target(f"{name}: polls per task", polls, "<=", TARGET_POLLS))
    return targets


async def run(ctx: Context) -> ScenarioResult:
    if ctx.quick:
        items, limit, window, duration, concurrency = 30, 20, 1.0, 0.5, 30
    else:
        items, limit, window, duration, concurrency = 300, 100, 2.0, 1.0, 50
    sizes = [items * case.scale // (3 if case.scale > 1 else 1) for case in CASES]
    arg_lists = [
        case.sim_args(size, limit, window, duration, seed)
        for seed, (case, size) in enumerate(zip(CASES, sizes, strict=True), 1)
    ]
    async with running_simulators(*arg_lists) as sims:

        async def one(case: Case, sim: SimProcess) -> dict[str, Any]:
            try:
                return await _run_case(
                    case,
                    sim,
                    items=sizes[CASES.index(case)],
                    limit=limit,
                    window=window,
                    concurrency=concurrency,
                    log=ctx.log,
                )
            finally:
                await sim.stop()  # a finished case's simulator goes at once

        pairs = list(zip(CASES, sims, strict=True))
        if ctx.quick:  # only the figures' presence matters: run the cases side by side
            rows = list(await asyncio.gather(*(one(case, sim) for case, sim in pairs)))
        else:
            # Our cases one at a time (their figures are the targets); then the naive ones
            # together: they wait out backoff sleeps and 429s, not the CPU.
            rows = [await one(case, sim) for case, sim in pairs if case.client == "ours"]
            rows += await asyncio.gather(
                *(one(case, sim) for case, sim in pairs if case.client != "ours")
            )
        # the cases in CASES order (ours first, then the naive ones, as run)
        rows.sort(key=lambda row: [case.name for case in CASES].index(row["case"]))
    series = {row["case"]: row.pop("series") for row in rows}
    ours = [row for row in rows if row["client"] == "ours"]
    naive = {row["mode"]: row for row in rows if row["client"] == "naive"}
    by_name = {row["case"]: row for row in ours}
    learned = {mode: by_name[f"{mode}+headers"] for mode in ("fixed", "sliding")}
    summary = {
        "efficiency_fixed": learned["fixed"]["efficiency"],
        "efficiency_sliding": learned["sliding"]["efficiency"],
        "efficiency_2_processes_fixed": by_name["2 processes, fixed+headers"]["efficiency"],
        "min_efficiency_ours": min(row["efficiency"] for row in ours),
        "rate_limited_ours": sum(row["rate_limited"] for row in ours),
        "rate_limited_naive": sum(row["rate_limited"] for row in naive.values()),
        "naive_wall_over_ours_fixed": naive["fixed"]["wall_s"] / learned["fixed"]["wall_s"],
        "naive_wall_over_ours_sliding": naive["sliding"]["wall_s"] / learned["sliding"]["wall_s"],
    }
    return {
        "params": {
            "items": items,
            "limit": limit,
            "window_s": window,
            "task_duration_s": duration,
            "task_jitter": TASK_JITTER,
            "concurrency": concurrency,
            "parallel_cases": "all" if ctx.quick else "naive ones",
        },
        "rows": rows,
        "summary": summary,
        "targets": _targets(rows),
        "series": series,  # type: ignore[typeddict-unknown-key]
    }
