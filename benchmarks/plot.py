"""PNG charts of one benchmark run: ``python -m benchmarks --plot DIR`` (matplotlib, dev extra).

Made from the same report as the figures (the dict ``run.main`` writes with ``--json``), so a chart
never disagrees with the table next to it:

- ``budget.png``: requests started per rate-limit window over time on issue 24's reference
  workload, burst pacing, smooth pacing and the naive client side by side, the limit drawn and
  the 429 responses marked;
- ``ratelimit.png``: requests started per rate-limit window over time, katapult-async and the
  naive client side by side, the limit drawn and the 429 responses marked;
- ``polling.png``: polls per task and detection latency, learned schedule against fixed 1 s;
- ``memory.png``: peak RSS against the number of items of the bulk runs.

A chart whose scenario did not run (or failed) is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

OURS_CASE = "fixed+headers"
NAIVE_CASE = "naive, fixed"


def plot(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write every chart the report has the data for into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scenarios: Mapping[str, Any] = report.get("scenarios", {})
    written = []
    charts = (
        ("budget", _budget),
        ("ratelimit", _ratelimit),
        ("polling", _polling),
        ("scale", _memory),
    )
    for name, chart in charts:
        result = scenarios.get(name)
        if not result or "error" in result:
            continue
        path = chart(result, out)
        if path is not None:
            written.append(path)
    return written


def _per_window(
    at: Sequence[float], status: Sequence[int | None], window: float
) -> tuple[list[float], list[int], list[int]]:
    count = max(1, math.ceil((max(at, default=0.0) + 1e-9) / window))
    started = [0] * count
    limited = [0] * count
    for t, code in zip(at, status, strict=True):
        i = min(int(t // window), count - 1)
        started[i] += 1
        limited[i] += code == 429
    return [i * window for i in range(count)], started, limited


def _ratelimit(result: Mapping[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    series = result.get("series", {})
    sides = [(case, series[case]) for case in (OURS_CASE, NAIVE_CASE) if case in series]
    if not sides:
        return None
    limit, window = result["params"]["limit"], result["params"]["window_s"]
    fig, axes = plt.subplots(1, len(sides), figsize=(6 * len(sides), 3.6), sharey=True)
    axes = [axes] if len(sides) == 1 else list(axes)
    for ax, (case, data) in zip(axes, sides, strict=True):
        starts, started, limited = _per_window(data["at"], data["status"], window)
        ax.bar(starts, started, width=window * 0.9, align="edge", color="#4c72b0", label="started")
        ax.bar(starts, limited, width=window * 0.9, align="edge", color="#c44e52", label="429")
        ax.axhline(limit, color="black", linestyle="--", linewidth=1, label=f"limit {limit}")
        title = "katapult-async" if case == OURS_CASE else "naive aiohttp + backoff"
        ax.set_title(f"{title}: {sum(limited)} × 429")
        ax.set_xlabel(f"time (s), windows of {window:g} s")
    axes[0].set_ylabel("requests started per window")
    axes[0].legend(loc="upper right", fontsize="small")
    return _save(fig, out / "ratelimit.png")


def _budget(result: Mapping[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    series = result.get("series", {})
    charted = result["params"].get("charted")
    sides = [
        (client, series[client]) for client in ("burst", "smooth", "naive") if client in series
    ]
    if not sides or not charted:
        return None
    limit, window = charted["limit"], charted["window_s"]
    fig, axes = plt.subplots(1, len(sides), figsize=(4.6 * len(sides), 3.6), sharey=True)
    axes = [axes] if len(sides) == 1 else list(axes)
    titles = {"burst": "burst (default)", "smooth": "smooth", "naive": "naive aiohttp + backoff"}
    for ax, (client, data) in zip(axes, sides, strict=True):
        starts, started, limited = _per_window(data["at"], data["status"], window)
        ax.bar(starts, started, width=window * 0.9, align="edge", color="#4c72b0", label="started")
        ax.bar(starts, limited, width=window * 0.9, align="edge", color="#c44e52", label="429")
        ax.axhline(limit, color="black", linestyle="--", linewidth=1, label=f"limit {limit}")
        end = max(data["at"], default=0.0)
        ax.set_title(f"{titles[client]}: {end:.1f} s, {sum(limited)} × 429", fontsize="medium")
        ax.set_xlabel(f"time (s), windows of {window:g} s")
    axes[0].set_ylabel("requests started per window")
    axes[0].legend(loc="upper right", fontsize="small")
    return _save(fig, out / "budget.png")


def _polling(result: Mapping[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    series = result.get("series", {})
    if not series:
        return None
    skip = result["params"].get("learning_tasks_excluded", 0)
    fig, (polls_ax, latency_ax) = plt.subplots(1, 2, figsize=(11, 3.6))
    names = list(series)
    labels = ["learned schedule" if n == "ours" else f"{n} polling" for n in names]
    most = max((max(series[n]["polls"][skip:], default=1) for n in names), default=1)
    width = 0.8 / len(names)
    for k, (name, label) in enumerate(zip(names, labels, strict=True)):
        polls = series[name]["polls"][skip:]
        counts = [sum(p == n for p in polls) for n in range(1, most + 1)]
        xs = [n + (k - (len(names) - 1) / 2) * width for n in range(1, most + 1)]
        polls_ax.bar(xs, counts, width=width, label=label)
    polls_ax.set_xticks(range(1, most + 1))
    polls_ax.set_xlabel(f"polls per task (after the first {skip})")
    polls_ax.set_ylabel("tasks")
    polls_ax.legend(fontsize="small")
    for name, label in zip(names, labels, strict=True):
        latency_ax.hist(series[name]["latency_s"][skip:], bins=20, alpha=0.6, label=label)
    latency_ax.set_xlabel("detection latency (s): task end to the poll that sees it")
    latency_ax.set_ylabel("tasks")
    latency_ax.legend(fontsize="small")
    return _save(fig, out / "polling.png")


def _memory(result: Mapping[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    rows = result.get("rows", [])
    if not rows:
        return None
    items = [row["items"] for row in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(items, [row["rss_peak_mib"] for row in rows], marker="o", label="peak RSS")
    ax.plot(items, [row["rss_before_mib"] for row in rows], marker=".", label="RSS before the run")
    for t in result.get("targets", []):
        ax.axhline(t["limit"], color="#c44e52", linestyle="--", linewidth=1, label="target")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("items (from a generator)")
    ax.set_ylabel("MiB")
    ax.set_title("bulk update memory")
    ax.legend(fontsize="small")
    return _save(fig, out / "memory.png")


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
