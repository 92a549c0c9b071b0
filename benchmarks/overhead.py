"""Scenario ``overhead``: the client's CPU per request against a bare aiohttp loop.

Both sides issue the same PATCH + GET task pairs (``concurrency`` at once, the same connection
pool size) against a simulator in another process with no rate limit and instant tasks. The
client side is measured with ``time.process_time()`` of this process, so the simulator's own CPU
does not count. The sides run alternately, ``rounds`` times each after a warm-up, and the
medians are compared. Target (issue 13): CPU ratio ours / bare <= 1.10.

A third, diagnostic side runs our client with the rate limiter's first-request probe turned off
(while ``RateLimiter`` has that option), to tell the client's own per-request cost from the
limiter's queueing.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks import instructions
from benchmarks._common import (
    Context,
    Measurement,
    ScenarioResult,
    median,
    target,
)
from benchmarks._sim import SimProcess, running_simulators
from benchmarks.baselines import bare_pairs, run_workers
from katapult_async import KatapultClient, RateLimiter

NAME = "overhead"
TARGET_CPU_RATIO = 1.10
INSTRUCTION_PAIRS = 400  # pairs per side counted under callgrind (about 50 times slower)
PROFILE = "1gbps"


Side = Callable[[str, str, list[str], str, int], Awaitable[int]]


async def ours_pairs(
    base_url: str,
    token: str,
    interfaces: list[str],
    profile: str,
    concurrency: int,
    *,
    limiter: RateLimiter | None = None,
) -> int:
    """The same pairs through :class:`KatapultClient`; returns the number of errors."""
    errors = 0
    async with KatapultClient(token, base_url=base_url, limiter=limiter) as client:

        async def pair(interface_id: str) -> None:
            nonlocal errors
            try:
                task = await client.update_speed_profile(interface_id, profile)
                await client.get_task(task.id)
            except Exception:
                errors += 1

        await run_workers(interfaces, concurrency, pair)
    return errors


async def _ours_without_probe(
    base_url: str, token: str, interfaces: list[str], profile: str, concurrency: int
) -> int:
    limiter = RateLimiter(None, 60.0, probe=False)  # type: ignore[call-arg,unused-ignore]
    return await ours_pairs(base_url, token, interfaces, profile, concurrency, limiter=limiter)


def sides() -> dict[str, Side]:
    """The sides by name: ours, the bare loop, and (while it exists) ours with the probe off."""
    sides: dict[str, Side] = {"ours": ours_pairs, "bare": bare_pairs}
    if "probe" in inspect.signature(RateLimiter).parameters:
        sides["ours, limiter probe off"] = _ours_without_probe
    return sides


async def run(ctx: Context) -> ScenarioResult:
    pairs = 200 if ctx.quick else 2000
    rounds = 1 if ctx.quick else 7
    warmup = 50 if ctx.quick else 200
    concurrency = 64
    sim_args = ["--task-duration", "0", "--no-record", "--seed", "1"]
    sides_ = sides()
    runs: dict[str, list[Measurement]] = {name: [] for name in sides_}
    errors: dict[str, int] = dict.fromkeys(sides_, 0)
    async with running_simulators(sim_args) as (sim,):
        for fn in sides_.values():  # warm-up: imports, code paths, the simulator's caches
            await fn(sim.base_url, sim.token, await sim.add_interfaces(warmup), PROFILE, 16)
        for round_ in range(rounds):
            order = list(sides_) if round_ % 2 == 0 else list(reversed(sides_))
            for name in order:
                ids = await sim.add_interfaces(pairs)
                with Measurement() as m:
                    errors[name] += await sides_[name](
                        sim.base_url, sim.token, ids, PROFILE, concurrency
                    )
                runs[name].append(m)
                ctx.log(f"overhead: {name} round {round_ + 1}: wall {m.wall:.2f}s cpu {m.cpu:.2f}s")
        counted = await _count_instructions(ctx, sim) if not ctx.quick else {}
    rows: list[dict[str, Any]] = []
    for name, measured in runs.items():
        wall = median(m.wall for m in measured)
        cpu = median(m.cpu for m in measured)
        rows.append(
            {
                "side": name,
                "pairs": pairs,
                "wall_s": wall,
                "cpu_s": cpu,
                "cpu_per_request_us": cpu / (2 * pairs) * 1e6,
                "requests_per_s": 2 * pairs / wall,
                "cpu_s_rounds": [round(m.cpu, 3) for m in measured],
                "wall_s_rounds": [round(m.wall, 3) for m in measured],
                "errors": errors[name],
            }
        )
    ours, bare = rows[0], rows[1]
    for row in rows:
        row["cpu_ratio"] = row["cpu_s"] / bare["cpu_s"]
    cpu_ratio = ours["cpu_s"] / bare["cpu_s"]
    per_round = [o.cpu / b.cpu for o, b in zip(runs["ours"], runs["bare"], strict=True)]
    summary = {
        "cpu_ratio": cpu_ratio,
        "cpu_ratio_rounds": [round(r, 3) for r in per_round],
        "wall_ratio": ours["wall_s"] / bare["wall_s"],
        "extra_cpu_per_request_us": ours["cpu_per_request_us"] - bare["cpu_per_request_us"],
        "cpu_ratio_limiter_probe_off": rows[2]["cpu_ratio"] if len(rows) > 2 else None,
        "instructions_per_request": {name: round(v) for name, v in counted.items()},
        "instruction_ratio": counted["ours"] / counted["bare"] if counted else None,
    }
    targets = [target("cpu_ratio ours/bare", cpu_ratio, "<=", TARGET_CPU_RATIO)]
    if counted:
        targets.append(
            target(
                "instruction ratio ours/bare (callgrind)",
                summary["instruction_ratio"],
                "<=",
                TARGET_CPU_RATIO,
            )
        )
    return {
        "params": {
            "pairs": pairs,
            "rounds": rounds,
            "concurrency": concurrency,
            "simulator": " ".join(sim_args),
            "instruction_pairs": INSTRUCTION_PAIRS if counted else None,
        },
        "rows": rows,
        "summary": summary,
        "targets": targets,
    }


async def _count_instructions(ctx: Context, sim: SimProcess) -> dict[str, float]:
    """Instructions per request of ours and of the bare loop, counted by callgrind (both sides
    at once, each in its own child process); empty when valgrind is not installed or fails."""
    if not instructions.available():
        ctx.log("overhead: valgrind not found, instructions not counted")
        return {}
    names = ("ours", "bare")
    jobs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name in names:
        pair_of_jobs = []
        for _ in range(2):  # fresh interfaces for each run: a profile already set is a 409
            ids = await sim.add_interfaces(instructions.WARMUP + INSTRUCTION_PAIRS)
            job = {"base_url": sim.base_url, "token": sim.token, "profile": PROFILE, "ids": ids}
            pair_of_jobs.append(job)
        jobs[name] = (pair_of_jobs[0], pair_of_jobs[1])
    try:
        counts = await asyncio.gather(
            *(instructions.per_request(name, INSTRUCTION_PAIRS, jobs[name]) for name in names)
        )
    except RuntimeError as exc:  # valgrind there but unable to run it: keep the timed figures
        ctx.log(f"overhead: instructions not counted: {exc}")
        return {}
    counted = dict(zip(names, counts, strict=True))
    ctx.log(f"overhead: instructions per request {counted}")
    return counted
