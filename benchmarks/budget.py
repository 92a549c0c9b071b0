"""Scenario ``budget``: the three workloads of issue 24, against the burst bound T*.

Every request of a token spends one budget of N per window W. A job of R requests (2 per
interface: the PATCH and one poll) whose tasks last at most D needs::

    T* = floor((R - 1) / N) * W   (+ D when the last PATCHes can only go out in the last window)

plus round trips: all of it in one burst when R fits in what is left, else ``ceil(R / N)``
windows, the last opening ``floor((R - 1) / N) * W`` after the first. Each workload runs with our
client (``pacing="burst"``, the default), with ``pacing="smooth"`` (the even spreading of earlier
releases) and with the naive client (:func:`benchmarks.baselines.naive_bulk`: aiohttp + ``backoff``
on 429, polling every second), each against its own simulator process, in the same run:

* ``300 @ 1000/60s``: 300 interfaces, 1,000 requests per 60 s (the live API's usual budget): the
  600 requests fit, so T* is the slowest task, 1.5 s. Target: <= 2.5 s.
* ``200 @ 100/6s``, fixed and sliding windows: 400 requests need 4 windows: T* = 18 s.
  Target: <= 19.5 s.
* ``reference``, fixed and sliding: 300 interfaces, 100 per 2 s: 6 windows, T* = 10 s.
  Target: <= 11.0 s.
* ``2 processes``: the reference workload split between this process and a
  ``benchmarks.worker``, 150 interfaces each, started together. Target: combined <= 11.5 s.

Tasks last 0.5-1.5 s (1 s ±50 %) and report a flat progress of 5 while running, as the live API
does; concurrency 50 (25 per process when two share the token). Fixed windows are aligned to
the simulator's clock, a phase the client is not told; the client is told the window, not the
limit, which it learns from the ``X-Ratelimit-*`` headers. Every case's figures: wall, T*,
wall / T*, 429 responses and the most requests the server counted in any window (from its request
log: per fixed window, or in any window-long interval). Ours with burst pacing runs ``repeats``
times (3; 1 with ``--quick``): the median wall and its spread are reported.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import statistics
import tempfile
from collections.abc import Sequence
from typing import Any

from benchmarks._common import Context, Measurement, ScenarioResult, Target, target
from benchmarks._sim import SimProcess, WorkerProcess
from benchmarks.baselines import naive_bulk
from katapult_async import KatapultClient

NAME = "budget"
PROFILE = "1gbps"
DURATION = 1.0  # tasks of 1 s ±50 %: at most 1.5 s
JITTER = 0.5


class Workload:
    """One workload: its size, the token's budget and the target on ours."""

    def __init__(
        self,
        name: str,
        items: int,
        limit: int,
        window: float,
        modes: Sequence[str],
        target_s: float,
        *,
        processes: int = 1,
    ) -> None:
        self.name = name
        self.items = items
        self.limit = limit
        self.window = window
        self.modes = tuple(modes)
        self.target_s = target_s
        self.processes = processes

    def t_star(self, duration: float) -> float:
        """The burst bound: the last window's opening, and D when PATCHes must go out in it."""
        requests = 2 * self.items
        windows = math.ceil(requests / self.limit)
        bound = (requests - 1) // self.limit * self.window
        if self.items > (windows - 1) * self.limit:  # some PATCHes only fit in the last window
            bound += duration * (1 + JITTER)
        return bound


WORKLOADS = (
    Workload("300 @ 1000/60s", 300, 1000, 60.0, ("fixed",), 2.5),
    Workload("200 @ 100/6s", 200, 100, 6.0, ("fixed", "sliding"), 19.5),
    Workload("reference", 300, 100, 2.0, ("fixed", "sliding"), 11.0),
    Workload("2 processes", 300, 100, 2.0, ("fixed", "sliding"), 11.5, processes=2),
)
QUICK = (
    Workload("20 @ 100/4s", 20, 100, 4.0, ("fixed",), 2.5),
    Workload("20 @ 10/0.5s", 20, 10, 0.5, ("fixed",), 2.5),
    Workload("2 processes", 20, 10, 0.5, ("fixed",), 3.0, processes=2),
)
CLIENTS = ("burst", "smooth", "naive")
CHARTED = "reference"
"""The workload whose requests per window benchmarks/plot.py draws (budget.png), fixed windows."""


def _sim_args(workload: Workload, mode: str, duration: float, seed: int) -> list[str]:
    return [
        *("--rate-limit", str(workload.limit), "--window", str(workload.window)),
        *("--mode", mode, "--interfaces", str(workload.items)),
        *("--task-duration", str(duration), "--task-jitter", str(JITTER)),
        *("--seed", str(seed), "--task-progress", "live"),
    ]


def max_in_window(times: list[float], window: float, mode: str) -> int:
    """The most requests the server counted in one window: per fixed window of the simulator's
    clock, or in any window-long interval (sliding)."""
    if not times:
        return 0
    if mode == "fixed":
        return max(collections.Counter(math.floor(t / window) for t in times).values())
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


async def _ours(
    sim: SimProcess, ids: list[str], workload: Workload, pacing: str, concurrency: int
) -> tuple[Measurement, collections.Counter[str]]:
    outcomes: collections.Counter[str] = collections.Counter()
    async with KatapultClient(
        sim.token,
        base_url=sim.base_url,
        rate_limit_window=workload.window,
        pacing="smooth" if pacing == "smooth" else "burst",
    ) as client:
        with Measurement() as m:
            async for result in client.bulk_update_speed_profiles(
                ((i, PROFILE) for i in ids), concurrency=concurrency
            ):
                outcomes[result.outcome.value] += 1
    return m, outcomes


async def _two_processes(
    sim: SimProcess, ids: list[str], workload: Workload, pacing: str, concurrency: int
) -> tuple[float, collections.Counter[str]]:
    """Half the items here, half in a worker process, started together; (wall, outcomes)."""
    half = len(ids) // 2
    fd, path = tempfile.mkstemp(prefix="katapult-bench-ids-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(ids[half:]) + "\n")
        worker = WorkerProcess(
            [
                *("--base-url", sim.base_url, "--token", sim.token, "--ids-file", path),
                *("--concurrency", str(concurrency // 2), "--window", str(workload.window)),
                *("--pacing", pacing),
            ],
            sync_start=True,
        )
        await worker.start()
        try:
            worker.go()
            m, outcomes = await _ours(sim, ids[:half], workload, pacing, concurrency // 2)
            other = await worker.finish()
        finally:
            await worker.kill()
    finally:
        os.unlink(path)
    outcomes.update(other["outcomes"])
    return max(m.end, other["end"]) - min(m.start, other["start"]), outcomes


async def _case(
    workload: Workload, mode: str, client: str, *, duration: float, seed: int, log: Any
) -> dict[str, Any]:
    concurrency = 50
    sim = SimProcess(_sim_args(workload, mode, duration, seed))
    await sim.start()
    try:
        ids = await sim.interfaces()
        if client == "naive":
            with Measurement() as m:
                naive = await naive_bulk(sim.base_url, sim.token, ids, PROFILE, concurrency)
            wall = m.wall
            completed = naive.completed
        elif workload.processes == 2:
            wall, outcomes = await _two_processes(sim, ids, workload, client, concurrency)
            completed = outcomes["completed"]
        else:
            m, outcomes = await _ours(sim, ids, workload, client, concurrency)
            wall, completed = m.wall, outcomes["completed"]
        stats = await sim.stats()
        log_entries = await sim.requests()
    finally:
        await sim.stop()
    t_star = workload.t_star(duration)
    tasks = stats["tasks_created"]
    row = {
        "workload": workload.name,
        "mode": mode,
        "client": client,
        "items": workload.items,
        "wall_s": wall,
        "t_star_s": t_star,
        "wall_over_t_star": wall / t_star,
        "requests": stats["total"],
        "rate_limited": stats["rate_limited"],
        "max_in_window": max_in_window(
            [entry["at"] for entry in log_entries], workload.window, mode
        ),
        "limit": workload.limit,
        "polls_per_task": stats["task_polls"] / tasks if tasks else None,
        "completed": completed,
    }
    if workload.name == CHARTED and mode == "fixed":  # for benchmarks/plot.py (budget.png)
        first = min((entry["at"] for entry in log_entries), default=0.0)
        row["series"] = {
            "at": [round(entry["at"] - first, 4) for entry in log_entries],
            "status": [entry["status"] for entry in log_entries],
        }
    log(
        f"budget: {workload.name} {mode} {client}: wall {wall:.2f}s (T* {t_star:.1f}s), "
        f"{row['requests']} requests, {row['rate_limited']} x 429, "
        f"max {row['max_in_window']} per window"
    )
    return row


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per (workload, mode, client): burst's median of its repeats, with its spread."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        groups[(row["workload"], row["mode"], row["client"])].append(row)
    table = []
    for (_workload, _mode, _client), runs in groups.items():
        walls = [run["wall_s"] for run in runs]
        median = statistics.median(walls)
        first = runs[0]
        table.append(
            {
                **first,
                "wall_s": median,
                "wall_min_s": min(walls),
                "wall_max_s": max(walls),
                "runs": len(runs),
                "wall_over_t_star": median / first["t_star_s"],
                "rate_limited": max(run["rate_limited"] for run in runs),
                "max_in_window": max(run["max_in_window"] for run in runs),
                "requests": statistics.median(run["requests"] for run in runs),
                "completed": min(run["completed"] for run in runs),
            }
        )
    return {"table": table}


async def run(ctx: Context) -> ScenarioResult:
    workloads = QUICK if ctx.quick else WORKLOADS
    duration = 0.2 if ctx.quick else DURATION
    repeats = 1 if ctx.quick else 3
    cases = [(w, mode) for w in workloads for mode in w.modes]
    seed = 100
    rows: list[dict[str, Any]] = []
    # Ours one at a time (their walls are the targets); the baselines together afterwards:
    # they wait out their pacing, backoff sleeps and polls, not the CPU.
    for _ in range(repeats):
        for workload, mode in cases:
            seed += 1
            rows.append(
                await _case(workload, mode, "burst", duration=duration, seed=seed, log=ctx.log)
            )
    baselines = []
    for workload, mode in cases:
        for client in ("smooth", "naive"):
            if client == "naive" and workload.processes == 2:
                continue
            seed += 1
            baselines.append(
                _case(workload, mode, client, duration=duration, seed=seed, log=ctx.log)
            )
    rows += await asyncio.gather(*baselines)
    series: dict[str, Any] = {}
    for row in rows:
        data = row.pop("series", None)
        if data is not None and row["client"] not in series:
            series[row["client"]] = data
    charted = next((w for w in workloads if w.name == CHARTED), None)
    table = _summarise(rows)["table"]
    targets: list[Target] = []
    for row in table:
        if row["client"] != "burst":
            continue
        workload = next(w for w in workloads if w.name == row["workload"])
        name = f"{row['workload']} {row['mode']}"
        targets.append(target(f"{name}: wall (s)", row["wall_s"], "<=", workload.target_s))
        targets.append(target(f"{name}: 429s", row["rate_limited"], "<=", 0))
        targets.append(
            target(f"{name}: most in a window", row["max_in_window"], "<=", workload.limit)
        )
        targets.append(target(f"{name}: completed", row["completed"], ">=", workload.items))
    display = [
        {
            "workload": f"{row['workload']} {row['mode']}",
            "client": row["client"],
            "wall_s": row["wall_s"],
            "spread_s": f"{row['wall_min_s']:.2f}-{row['wall_max_s']:.2f}"
            if row["runs"] > 1
            else "",
            "t_star_s": row["t_star_s"],
            "wall/T*": row["wall_over_t_star"],
            "429s": row["rate_limited"],
            "max/window": f"{row['max_in_window']}/{row['limit']}",
            "requests": row["requests"],
        }
        for row in table
    ]
    by_key = {(row["workload"], row["mode"], row["client"]): row for row in table}
    summary: dict[str, Any] = {
        f"{row['workload']} {row['mode']} {row['client']}: wall_s": row["wall_s"] for row in table
    }
    summary["rate_limited_burst"] = sum(r["rate_limited"] for r in table if r["client"] == "burst")
    summary["burst_over_smooth"] = {
        f"{w} {m}": by_key[(w, m, "burst")]["wall_s"] / by_key[(w, m, "smooth")]["wall_s"]
        for (w, m, c) in by_key
        if c == "burst" and (w, m, "smooth") in by_key
    }
    return {
        "params": {
            "task_duration_s": duration,
            "task_jitter": JITTER,
            "concurrency": 50,
            "repeats_burst": repeats,
            "charted": None
            if charted is None
            else {"workload": CHARTED, "limit": charted.limit, "window_s": charted.window},
        },
        "rows": display,
        "summary": summary,
        "targets": targets,
        "detail": rows,  # type: ignore[typeddict-unknown-key]
        "series": series,
    }
