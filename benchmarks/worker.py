"""``python -m benchmarks.worker``: one bulk run in a process of its own.

Used where a scenario needs a second client process (two processes sharing a token) or a fresh
process per run (peak RSS of the scale scenario: ``ru_maxrss`` only ever grows). Interface ids are
read lazily, one per line, from ``--ids-file``, so the input is streamed from a generator.

Output on stdout, one JSON object per line: ``{"ready": ...}`` once imported and set up (with
``--sync-start`` it then waits for a line on stdin before starting), then the result.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from benchmarks._common import Measurement, peak_rss_mib, rss_mib
from katapult_async import KatapultClient


def read_pairs(
    path: str, offset: int, count: int | None, profile: str
) -> Iterator[tuple[str, str]]:
    """``(interface_id, profile)`` for lines ``offset .. offset + count`` of ``path``, lazily."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if number < offset:
                continue
            if count is not None and number >= offset + count:
                return
            yield line.strip(), profile


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--ids-file", required=True)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--count", type=int)
    parser.add_argument("--profile", default="1gbps")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--rate-limit", type=int)
    parser.add_argument("--pacing", choices=["burst", "smooth"], default="burst")
    parser.add_argument("--no-wait", action="store_true", help="stop at SUBMITTED")
    parser.add_argument("--sync-start", action="store_true", help="start on a line on stdin")
    return parser


async def run(args: argparse.Namespace) -> dict[str, Any]:
    outcomes: collections.Counter[str] = collections.Counter()
    async with KatapultClient(
        args.token,
        base_url=args.base_url,
        rate_limit=args.rate_limit,
        rate_limit_window=args.window,
        pacing=args.pacing,
    ) as client:
        rss_before = peak_rss_mib()
        print(json.dumps({"ready": True, "rss_mib": rss_before}), flush=True)
        if args.sync_start:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        pairs = read_pairs(args.ids_file, args.offset, args.count, args.profile)
        with Measurement() as m:
            async for result in client.bulk_update_speed_profiles(
                pairs, concurrency=args.concurrency, wait=not args.no_wait
            ):
                outcomes[result.outcome.value] += 1
        items = sum(outcomes.values())
        return {
            "items": items,
            "outcomes": dict(outcomes),
            "wall_s": m.wall,
            "cpu_s": m.cpu,
            "start": m.start,
            "end": m.end,
            "items_per_s": items / m.wall if m.wall > 0 else None,
            "rss_before_mib": rss_before,
            "rss_peak_mib": peak_rss_mib(),
            "ru_maxrss_mib": rss_mib(),
            "client_rate_limited": client.rate_limit.rate_limited,
            "polls": client.poller.stats.polls,
            "clock_at_exit": time.monotonic(),
        }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
