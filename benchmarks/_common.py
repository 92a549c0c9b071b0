"""What every scenario shares: the run context, CPU/RSS measurement, targets and result shape.

A scenario is an ``async def run(ctx: Context) -> ScenarioResult``. Its result is a plain dict:

* ``params``: the sizes and settings it ran with;
* ``rows``: one dict of figures per case (printed as a table, one row per case);
* ``summary``: the scenario's headline figures;
* ``targets``: ``{name, value, op, limit, met}`` for each target the brief sets.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

import aiohttp

__all__ = [
    "Context",
    "Measurement",
    "ScenarioResult",
    "Target",
    "format_table",
    "machine_info",
    "median",
    "peak_rss_mib",
    "percentile",
    "rss_mib",
    "target",
]


class Target(TypedDict):
    """One target of the brief and whether this run met it."""

    name: str
    value: float | None
    op: str
    limit: float
    met: bool


class ScenarioResult(TypedDict):
    """What a scenario returns (and what the JSON file holds for it)."""

    params: dict[str, Any]
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    targets: list[Target]


class Context:
    """Options of this run, shared by the scenarios.

    Args:
        quick: Small sizes, for the smoke test.
        verbose: Print progress lines to stderr.
    """

    def __init__(self, *, quick: bool, verbose: bool = True) -> None:
        self.quick = quick
        self.verbose = verbose
        self._t0 = time.monotonic()

    def log(self, message: str) -> None:
        """A progress line on stderr (the tables go to stdout)."""
        if self.verbose:
            print(f"[{time.monotonic() - self._t0:7.1f}s] {message}", file=sys.stderr, flush=True)


class Measurement:
    """Wall time and this process's CPU time over a ``with`` block."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.start = 0.0
        self.end = 0.0
        self._cpu0 = 0.0

    def __enter__(self) -> Measurement:
        self._cpu0 = time.process_time()
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end = time.monotonic()
        self.cpu = time.process_time() - self._cpu0
        self.wall = self.end - self.start


def rss_mib() -> float:
    """``ru_maxrss`` of this process, in MiB (the platform reports KiB, or bytes on macOS).

    On Linux a process started with ``fork``/``vfork`` + ``exec`` inherits its parent's high-water
    mark here (the kernel folds the pre-exec memory's peak into it), so in a child this can be
    the parent's peak, not the child's own: see :func:`peak_rss_mib`.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def peak_rss_mib() -> float:
    """This process image's own peak resident set size, in MiB.

    ``VmHWM`` from ``/proc/self/status`` on Linux (reset by ``exec``, so a worker process
    reports only its own peak); :func:`rss_mib` elsewhere.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return rss_mib()


def median(values: Iterable[float]) -> float:
    """The median of a non-empty sample."""
    return float(statistics.median(list(values)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a sample, interpolating; None when it is empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (pos - low) * (ordered[high] - ordered[low])


def target(name: str, value: float | None, op: str, limit: float) -> Target:
    """A target; ``op`` is ``"<="`` or ``">="``. A missing value does not meet it."""
    if value is None:
        met = False
    elif op == "<=":
        met = value <= limit
    elif op == ">=":
        met = value >= limit
    else:
        raise ValueError(f"unknown op {op!r}")
    return {"name": name, "value": value, "op": op, "limit": limit, "met": met}


def machine_info() -> dict[str, Any]:
    """Where the figures came from: cores, CPU model, load, Python and library versions."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": model,
        "loadavg_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01:
            return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
        return f"{value:.2e}"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value)
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows of figures as a plain-text table (columns: the keys of the first row by default)."""
    if not rows:
        return "(no rows)"
    if columns is None:
        columns = list(rows[0])
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    lines = ["  ".join(col.ljust(w) for col, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)
