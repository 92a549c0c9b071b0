"""Scenario ``probe``: one slow first response must not hold the run (issue 12, point 1).

21 interfaces, instant tasks, no rate limit; the first PATCH of the run
is answered after 4 s (a ``slow_response`` fault). The run stops at ``SUBMITTED`` (``wait=False``),
so that the figures measure the probe, not the first poll of a task name never seen (1 s after
submission). Reported: when (after the start) the 20 other results have all arrived, and when the
slow one did. Beside it, in the same run: the same with the
probe unbounded (``probe_timeout=None``, the behaviour before issue 12), where everything waits for
the slow answer. **Target: the 20 others within 1 s of the start.**
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks._common import Context, ScenarioResult, target
from benchmarks._sim import SimProcess, running_simulators
from katapult_async import KatapultClient
from katapult_async._ratelimit import DEFAULT_PROBE_TIMEOUT

DELAY = 4.0
ITEMS = 21
TARGET_OTHERS_S = 1.0


async def _side(sim: SimProcess, name: str, probe_timeout: float | None) -> dict[str, Any]:
    ids = await sim.interfaces()
    await sim.inject(kind="slow_response", times=1, method="PATCH", delay=DELAY)
    arrived: list[float] = []
    async with KatapultClient(
        sim.token, base_url=sim.base_url, probe_timeout=probe_timeout
    ) as client:
        start = time.monotonic()
        async for _ in client.bulk_update_speed_profiles(
            ((i, "1gbps") for i in ids), concurrency=ITEMS, wait=False
        ):
            arrived.append(time.monotonic() - start)
    return {
        "side": name,
        "probe_timeout_s": probe_timeout,
        "items": len(arrived),
        "others_done_s": arrived[-2],
        "slow_done_s": arrived[-1],
        "first_result_s": arrived[0],
    }


async def run(ctx: Context) -> ScenarioResult:
    # No rate limit: at a learned 1,000 per minute the limiter would itself space 20 PATCHes
    # over 1.2 s, which is pacing, not the probe.
    args = ["--task-duration", "0"]
    args += ["--interfaces", str(ITEMS), "--seed", "5"]
    async with running_simulators(args, args) as (bounded, unbounded):
        rows = [
            await _side(bounded, "ours (bounded probe)", DEFAULT_PROBE_TIMEOUT),
            await _side(unbounded, "probe_timeout=None", None),
        ]
    ours = rows[0]
    return {
        "params": {"items": ITEMS, "first_patch_delay_s": DELAY, "task_duration_s": 0},
        "rows": rows,
        "summary": {
            "others_done_s": ours["others_done_s"],
            "unbounded_others_done_s": rows[1]["others_done_s"],
        },
        "targets": [
            target("20 other results within s", ours["others_done_s"], "<=", TARGET_OTHERS_S)
        ],
    }
