"""Scenario ``ratelimit``: a bulk job under a per-token limit it must learn (issues 3 and 6).

600 updates with ``wait=True`` (tasks of 1 s ±30 %, polled for real), concurrency 100, against a
limit of 100 requests per 2 s window, counted in fixed and in sliding windows, with the rate-limit
headers on (as the live API sends them) and off (only the 429 body's ``total_permitted`` tells).
Our client is told the window length (``rate_limit_window=2``) but not the limit, except in one
case where ``rate_limit=100`` is given up front. Beside it, in the same run:

* the naive baseline (:func:`benchmarks.baselines.naive_bulk`): ``backoff.expo`` on 429, polling
  every second, ignoring what the server says about the limit;
* two client processes sharing one token (headers on), 300 items each: this process and a
  ``python -m benchmarks.worker`` subprocess, started together.

The bound is the time the requests need at the permitted rate, at two per item (one PATCH, one
poll): ``2 * items / (limit / window)`` = 24 s. Utilisation is requests sent / (wall * permitted
rate), useful efficiency is bound / wall. Targets (our client): utilisation >= 0.9, efficiency >=
0.85, no 429 with headers or a given limit, at most one when only a 429 body teaches the limit,
and a handful at most for two processes.
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
TARGET_UTILISATION = 0.9
TARGET_EFFICIENCY = 0.85
MAX_429_SHARED = 5


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
    ) -> None:
        self.name = name
        self.client = client
        self.mode = mode
        self.headers = headers
        self.limit_given = limit_given
        self.processes = processes

    def sim_args(
        self, items: int, limit: int, window: float, duration: float, seed: int
    ) -> list[str]:
        args = ["--rate-limit", str(limit), "--window", str(window), "--mode", self.mode]
        args += ["--interfaces", str(items), "--task-duration", str(duration)]
        args += ["--task-jitter", "0.3", "--seed", str(seed), "--no-record"]
        return args + ([] if self.headers else ["--no-rate-headers"])


CASES = (
    Case("fixed+headers", "ours", "fixed", True),
    Case("fixed, 429 body only", "ours", "fixed", False),
    Case("sliding+headers", "ours", "sliding", True),
    Case("sliding, 429 body only", "ours", "sliding", False),
    Case("fixed, 429 body only, limit given", "ours", "fixed", False, limit_given=True),
    Case("2 processes, fixed+headers", "ours", "fixed", True, processes=2),
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
    }
    log(
        f"ratelimit: {case.name}: wall {wall:.1f}s (bound {bound:.1f}s), {requests} requests, "
        f"{row['rate_limited']} 429s, {row['polls_per_task'] or 0:.2f} polls/task"
    )
    return row


def _targets(rows: list[dict[str, Any]]) -> list[Target]:
    targets: list[Target] = []
    for row in rows:
        if row["client"] != "ours":
            continue
        name = row["case"]
        targets.append(target(f"{name}: utilisation", row["utilisation"], ">=", TARGET_UTILISATION))
        targets.append(target(f"{name}: efficiency", row["efficiency"], ">=", TARGET_EFFICIENCY))
        if row["processes"] > 1:
            allowed = MAX_429_SHARED
        elif row["headers"] or row["limit_given"]:
            allowed = 0
        else:
            allowed = 1
        targets.append(target(f"{name}: 429s", row["rate_limited"], "<=", allowed))
    return targets


async def run(ctx: Context) -> ScenarioResult:
    if ctx.quick:
        items, limit, window, duration, concurrency = 30, 20, 1.0, 0.5, 30
    else:
        items, limit, window, duration, concurrency = 600, 100, 2.0, 1.0, 100
    arg_lists = [
        case.sim_args(items, limit, window, duration, seed) for seed, case in enumerate(CASES, 1)
    ]
    async with running_simulators(*arg_lists) as sims:

        async def one(case: Case, sim: SimProcess) -> dict[str, Any]:
            try:
                return await _run_case(
                    case,
                    sim,
                    items=items,
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
    ours = [row for row in rows if row["client"] == "ours"]
    naive = {row["mode"]: row for row in rows if row["client"] == "naive"}
    learned = {row["mode"]: row for row in ours if row["processes"] == 1 and not row["limit_given"]}
    summary = {
        "min_utilisation_ours": min(row["utilisation"] for row in ours),
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
            "task_jitter": 0.3,
            "concurrency": concurrency,
            "parallel_cases": "all" if ctx.quick else "naive ones",
        },
        "rows": rows,
        "summary": summary,
        "targets": _targets(rows),
    }
