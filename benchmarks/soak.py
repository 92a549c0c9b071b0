"""Scenario ``soak`` (only with ``--soak``): 10,000 items through faults and a rate limit (issue 7).

The simulator (another process) limits the token to 500 requests per 1 s window, runs tasks of
0.3 s ±30 % of which 1 % fail, and injects faults on about 5 % of requests through
``POST /_sim/faults``: 503, 406 ``task_queueing_error`` (updates), dropped connections, an HTML
502, lost responses (the update is applied, the answer never comes), 429 with ``Retry-After``, and
``task_not_found`` (task reads). Our client learns the limit from the headers (it is told only
the window), and runs ``bulk_update_speed_profiles`` with ``wait=True``, concurrency 256.

Reported: results by outcome, errors by type, retries (requests sent minus the minimum of two per
item), faults injected, 429s, wall against the bound ``2 * items / (limit / window)``. Checked:
every item has exactly one result, and every ``COMPLETED`` or ``ALREADY_ASSIGNED`` interface really
has the profile in ``/_sim/state`` (a ``FAILED`` one must not, its task having reverted it).
"""

from __future__ import annotations

import collections
from typing import Any

from benchmarks._common import Context, Measurement, ScenarioResult, target
from benchmarks._sim import running_simulators
from katapult_async import KatapultClient, Outcome

NAME = "soak"
PERMALINK = "1gbps"
CONCURRENCY = 256

FAULTS: tuple[dict[str, Any], ...] = (
    {"kind": "service_unavailable", "probability": 0.010},
    {"kind": "task_queueing_error", "probability": 0.008},
    {"kind": "drop_connection", "probability": 0.006},
    {"kind": "html_502", "probability": 0.006},
    {"kind": "lost_response", "probability": 0.006},
    {"kind": "rate_limit", "probability": 0.0005, "retry_after": 0.5},
    {"kind": "task_not_found", "probability": 0.010},
)


async def run(ctx: Context) -> ScenarioResult:
    items, limit, window = (500, 100, 1.0) if ctx.quick else (10_000, 500, 1.0)
    sim_args = ["--rate-limit", str(limit), "--window", str(window), "--task-duration", "0.3"]
    sim_args += ["--task-jitter", "0.3", "--failure-rate", "0.01", "--interfaces", str(items)]
    sim_args += ["--seed", "11", "--no-record"]
    outcomes: collections.Counter[str] = collections.Counter()
    error_types: collections.Counter[str] = collections.Counter()
    indexes: list[int] = []
    by_interface: dict[str, str] = {}
    async with running_simulators(sim_args) as (sim,):
        ids = await sim.interfaces()
        async with KatapultClient(
            sim.token, base_url=sim.base_url, rate_limit_window=window
        ) as client:
            profiles = await client.list_speed_profiles(sub_domain="acme")
            target_id = next(p.id for p in profiles if p.permalink == PERMALINK)
            for fault in FAULTS:
                await sim.inject(times=-1, **fault)
            await sim.reset_stats()
            with Measurement() as m:
                async for result in client.bulk_update_speed_profiles(
                    ((i, PERMALINK) for i in ids), concurrency=CONCURRENCY, wait=True
                ):
                    outcomes[result.outcome.value] += 1
                    indexes.append(result.index)
                    by_interface[result.interface_id] = result.outcome.value
                    if result.error is not None:
                        error_types[type(result.error).__name__] += 1
            client_429 = client.rate_limit.rate_limited
            ctx.log(f"soak: {items} items in {m.wall:.1f}s: {dict(outcomes)}")
        await sim.clear_faults()
        state = await sim.state()
    stats = state["stats"]
    profiles_now: dict[str, str] = state["interfaces"]
    done = (Outcome.COMPLETED.value, Outcome.ALREADY_ASSIGNED.value)
    missing_profile = sum(
        1
        for iface, outcome in by_interface.items()
        if outcome in done and profiles_now[iface] != target_id
    )
    failed_but_applied = sum(
        1
        for iface, outcome in by_interface.items()
        if outcome == Outcome.FAILED.value and profiles_now[iface] == target_id
    )
    errors_with_profile = sum(
        1
        for iface, outcome in by_interface.items()
        if outcome == Outcome.ERROR.value and profiles_now[iface] == target_id
    )
    one_result_each = len(indexes) == items and set(indexes) == set(range(items))
    bound = 2 * items / (limit / window)
    requests = stats["total"]
    faults = sum(stats["faults"].values())
    row = {
        "items": items,
        "results": len(indexes),
        "completed": outcomes.get(Outcome.COMPLETED.value, 0),
        "already_assigned": outcomes.get(Outcome.ALREADY_ASSIGNED.value, 0),
        "failed": outcomes.get(Outcome.FAILED.value, 0),
        "errors": outcomes.get(Outcome.ERROR.value, 0),
        "wall_s": m.wall,
        "bound_s": bound,
        "wall_over_bound": m.wall / bound,
        "requests": requests,
        "minimum_requests": 2 * items,
        "extra_requests": requests - 2 * items,
        "faults_injected": faults,
        "fault_share": faults / requests if requests else None,
        "rate_limited": stats["rate_limited"],
        "client_saw_429": client_429,
        "cpu_s": m.cpu,
    }
    summary = {
        "one_result_each": one_result_each,
        "completed_without_profile": missing_profile,
        "failed_but_applied": failed_but_applied,
        "errors_with_profile": errors_with_profile,
        "error_types": dict(error_types),
        "faults_by_kind": stats["faults"],
        "by_status": stats["by_status"],
    }
    return {
        "params": {
            "items": items,
            "limit": limit,
            "window_s": window,
            "concurrency": CONCURRENCY,
            "faults": list(FAULTS),
            "task_failure_rate": 0.01,
        },
        "rows": [row],
        "summary": summary,
        "targets": [
            target("every item exactly one result", float(one_result_each), ">=", 1),
            target("COMPLETED/ALREADY_ASSIGNED without the profile", missing_profile, "<=", 0),
            target("FAILED but the profile stayed", failed_but_applied, "<=", 0),
        ],
    }
