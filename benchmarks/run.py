"""``python -m benchmarks``: run the scenarios, print a table per scenario, write the JSON.

Usage::

    python -m benchmarks [--quick] [--json PATH] [--only NAME[,NAME]] [--soak]

Every scenario runs against the project's simulator, side by side with its baseline in the same
run. See ``benchmarks/README.md`` for what each one measures and its targets.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from benchmarks._common import Context, ScenarioResult, format_table, machine_info

DEFAULT_SCENARIOS = ("overhead", "budget", "ratelimit", "probe", "polling", "scale", "concurrency")
ALL_SCENARIOS = (*DEFAULT_SCENARIOS, "soak", "journal")  # journal: --only journal


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of katapult_async against its simulator, each beside a baseline.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (the smoke test)")
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"run only these ({', '.join(ALL_SCENARIOS)})"
    )
    parser.add_argument("--soak", action="store_true", help="also run the soak scenario")
    parser.add_argument("--plot", metavar="DIR", help="write PNG charts of this run to DIR")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def select(only: str | None, soak: bool) -> list[str]:
    """The scenario names to run, in order."""
    if only:
        names = [name.strip() for name in only.split(",") if name.strip()]
        unknown = [name for name in names if name not in ALL_SCENARIOS]
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}")
        return names
    return [*DEFAULT_SCENARIOS, "soak"] if soak else list(DEFAULT_SCENARIOS)


def print_result(name: str, result: ScenarioResult) -> None:
    print(f"\n== {name}  {json.dumps(result['params'])}")
    print(format_table(result["rows"]))
    summary = ", ".join(f"{key}={_short(value)}" for key, value in result["summary"].items())
    print(f"summary: {summary}")
    for t in result["targets"]:
        status = "MET" if t["met"] else "NOT MET"
        print(f"target {t['name']} {t['op']} {t['limit']}: {_short(t['value'])} -> {status}")
    sys.stdout.flush()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


async def run_all(names: Sequence[str], ctx: Context) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        ctx.log(f"{name}: starting")
        started = time.monotonic()
        try:
            result: ScenarioResult = await module.run(ctx)
        except Exception as exc:  # one broken scenario must not hide the others' figures
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        elapsed = time.monotonic() - started
        ctx.log(f"{name}: done in {elapsed:.1f}s")
        results[name] = {**result, "duration_s": round(elapsed, 2)}
        print_result(name, result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = select(args.only, args.soak)
    ctx = Context(quick=args.quick, verbose=not args.quiet)
    machine = machine_info()
    print(
        f"machine: {machine['usable_cpus']} CPUs ({machine['cpu_model']}), "
        f"load {machine['loadavg_at_start']}, Python {machine['python']}, "
        f"aiohttp {machine['aiohttp']}; {'quick' if args.quick else 'full'} run of "
        f"{', '.join(names)}"
    )
    started = time.time()
    scenarios = asyncio.run(run_all(names, ctx))
    report = {
        "machine": machine,
        "quick": args.quick,
        "started_at": started,
        "duration_s": round(time.time() - started, 2),
        "scenarios": scenarios,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2, default=str)
            out.write("\n")
    if args.plot:
        from benchmarks.plot import plot

        for path in plot(report, args.plot):
            print(f"chart: {path}")
    failed = [name for name, result in scenarios.items() if "error" in result]
    return 1 if failed else 0
