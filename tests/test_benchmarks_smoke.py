"""The benchmark suite runs end to end at its smallest sizes and reports every figure.

Only the presence of the figures is checked, not their values: those depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

ROW_KEYS = {
    "overhead": {
        "side",
        "pairs",
        "wall_s",
        "cpu_s",
        "cpu_per_request_us",
        "requests_per_s",
        "cpu_ratio",
        "cpu_s_rounds",
        "wall_s_rounds",
        "errors",
    },
    "budget": {
        "workload",
        "client",
        "wall_s",
        "spread_s",
        "t_star_s",
        "wall/T*",
        "429s",
        "max/window",
        "requests",
    },
    "ratelimit": {
        "case",
        "client",
        "mode",
        "headers",
        "limit_given",
        "processes",
        "items",
        "wall_s",
        "bound_s",
        "requests",
        "utilisation",
        "efficiency",
        "rate_limited",
        "polls_per_task",
        "completed",
        "errors",
        "cpu_s",
    },
    "probe": {
        "side",
        "probe_timeout_s",
        "items",
        "others_done_s",
        "slow_done_s",
        "first_result_s",
    },
    "polling": {
        "side",
        "items",
        "completed",
        "wall_s",
        "cpu_s",
        "polls",
        "polls_per_task",
        "polls_per_task_after_20",
        "one_poll_share_after_20",
        "latency_median_s",
        "latency_mean_s",
        "latency_p90_s",
        "latency_max_s",
    },
    "scale": {
        "items",
        "results",
        "completed",
        "errors",
        "wall_s",
        "items_per_s",
        "cpu_s",
        "cpu_per_item_us",
        "polls_per_item",
        "rss_before_mib",
        "rss_peak_mib",
        "rss_growth_mib",
        "ru_maxrss_mib",
    },
    "concurrency": {
        "concurrency",
        "pairs",
        "wall_s",
        "pairs_per_s",
        "requests_per_s",
        "cpu_s",
        "cpu_busy",
        "cpu_per_request_us",
        "errors",
        "speedup",
        "scaling_efficiency",
    },
}

SUMMARY_KEYS = {
    "overhead": {
        "cpu_ratio",
        "cpu_ratio_rounds",
        "wall_ratio",
        "extra_cpu_per_request_us",
        "cpu_ratio_limiter_probe_off",
        "instructions_per_request",  # empty in --quick (counted on full runs only)
        "instruction_ratio",
    },
    "budget": {"rate_limited_burst", "burst_over_smooth"},
    "ratelimit": {
        "efficiency_fixed",
        "efficiency_sliding",
        "efficiency_2_processes_fixed",
        "min_efficiency_ours",
        "rate_limited_ours",
        "rate_limited_naive",
        "naive_wall_over_ours_fixed",
        "naive_wall_over_ours_sliding",
    },
    "probe": {"others_done_s", "unbounded_others_done_s"},
    "polling": {
        "polls_per_task_after_20",
        "latency_median_s",
        "fixed_polls_per_task_after_20",
        "fixed_latency_median_s",
    },
    "scale": {
        "peak_rss_mib_small",
        "peak_rss_mib_large",
        "rss_growth_large_over_small_mib",
        "items_per_s_large",
        "bare_pairs_per_s",
        "items_per_s_large_over_bare",
    },
    "concurrency": {
        "ideal_pairs_per_s_at_1",
        "speedup_at_8",
        "speedup_at_64",
        "speedup_at_256",
        "max_requests_per_s",
    },
}

ROWS = {
    "overhead": ("side", {"ours", "bare"}),  # plus a diagnostic side while the limiter has it
    "budget": ("client", {"burst", "smooth", "naive"}),
    "ratelimit": (
        "case",
        {
            "fixed+headers",
            "fixed, 429 body only",
            "sliding+headers",
            "sliding, 429 body only",
            "fixed, 429 body only, limit given",
            "1000 items, fixed+headers",
            "1000 items, sliding+headers",
            "2 processes, fixed+headers",
            "2 processes, sliding+headers",
            "naive, fixed",
            "naive, sliding",
        },
    ),
    "probe": ("side", {"ours (bounded probe)", "probe_timeout=None"}),
    "polling": ("side", {"ours", "fixed 1s"}),
    "scale": ("items", {1000, 2000}),
    "concurrency": ("concurrency", {1, 8, 64, 256}),
}

TARGETS = {
    "overhead": 1,
    "budget": 12,
    "ratelimit": 19,
    "probe": 1,
    "polling": 2,
    "scale": 2,
    "concurrency": 0,
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--quiet", "--json", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.slow
def test_report_describes_the_machine(report: dict[str, Any]) -> None:
    assert report["quick"] is True
    assert {"cpus", "cpu_model", "python", "aiohttp", "loadavg_at_start"} <= set(report["machine"])
    assert set(report["scenarios"]) == set(ROW_KEYS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ROW_KEYS))
def test_every_figure_is_reported(report: dict[str, Any], name: str) -> None:
    scenario = report["scenarios"][name]
    assert "error" not in scenario, scenario.get("error")
    assert {"params", "rows", "summary", "targets", "duration_s"} <= set(scenario)
    key, expected = ROWS[name]
    assert {row[key] for row in scenario["rows"]} >= expected
    for row in scenario["rows"]:
        assert ROW_KEYS[name] <= set(row), ROW_KEYS[name] - set(row)
    assert SUMMARY_KEYS[name] <= set(scenario["summary"])
    assert len(scenario["targets"]) == TARGETS[name]
    for t in scenario["targets"]:
        assert set(t) == {"name", "value", "op", "limit", "met"}
