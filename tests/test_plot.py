"""``benchmarks/plot.py``: every chart is written from a small report shaped like a real run's."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from benchmarks.plot import plot

REPORT = {
    "scenarios": {
        "budget": {
            "params": {"charted": {"workload": "reference", "limit": 4, "window_s": 1.0}},
            "series": {
                "burst": {"at": [0.0, 0.01, 0.02, 0.03, 1.05], "status": [200] * 5},
                "smooth": {"at": [0.0, 0.25, 0.5, 0.75, 1.25], "status": [200] * 5},
                "naive": {"at": [0.0, 0.01, 0.02, 0.03, 0.04], "status": [200] * 4 + [429]},
            },
        },
        "ratelimit": {
            "params": {"limit": 4, "window_s": 1.0},
            "series": {
                "fixed+headers": {"at": [0.0, 0.3, 0.6, 1.1, 1.5], "status": [200] * 5},
                "naive, fixed": {
                    "at": [0.0, 0.01, 0.02, 0.03, 0.04, 1.2],
                    "status": [200, 200, 200, 200, 429, 200],
                },
            },
        },
        "polling": {
            "params": {"learning_tasks_excluded": 1},
            "series": {
                "ours": {"polls": [3, 1, 1, 2], "latency_s": [0.5, 0.1, 0.2, 0.3]},
                "fixed 1s": {"polls": [2, 2, 1, 2], "latency_s": [0.4, 0.5, 0.3, 0.6]},
            },
        },
        "scale": {
            "rows": [
                {"items": 100, "rss_peak_mib": 40.0, "rss_before_mib": 35.0},
                {"items": 1000, "rss_peak_mib": 42.0, "rss_before_mib": 35.0},
            ],
            "targets": [{"limit": 143.0}],
        },
        "overhead": {"error": "RuntimeError: skipped"},
    }
}


def test_every_chart_is_written(tmp_path: Path) -> None:
    written = plot(REPORT, tmp_path / "charts")
    assert [p.name for p in written] == ["budget.png", "ratelimit.png", "polling.png", "memory.png"]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG")


def test_missing_or_failed_scenarios_are_skipped(tmp_path: Path) -> None:
    assert plot({"scenarios": {"scale": {"error": "boom"}}}, tmp_path) == []
