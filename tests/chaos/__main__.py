"""Run chaos seeds from the command line, for soaking: ``python -m tests.chaos [FIRST [COUNT]]``.

Prints each seed's report and exits with status 1 if any run broke an invariant. ``--items N``
sets the input size (default 250).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tests.chaos.harness import run_chaos


async def soak(first: int, count: int, items: int) -> int:
    failed = 0
    for seed in range(first, first + count):
        report = await run_chaos(seed, items)
        print(report.summary(), flush=True)
        failed += not report.ok
    print(f"{count - failed} of {count} seeds kept every invariant")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("first", type=int, nargs="?", default=0, help="first seed (default 0)")
    parser.add_argument("count", type=int, nargs="?", default=20, help="seeds to run (default 20)")
    parser.add_argument("--items", type=int, default=250, help="items per run (default 250)")
    args = parser.parse_args()
    return asyncio.run(soak(args.first, args.count, args.items))


if __name__ == "__main__":
    sys.exit(main())
