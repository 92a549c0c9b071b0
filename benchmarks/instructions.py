"""CPU as instructions: the ``overhead`` pairs counted by valgrind's callgrind, not timed.

On a shared machine the CPU time of one round of pairs varies by ±20 % from round to round, more
than the 10 % the target allows, so ``overhead`` also counts the instructions each side executes:
``valgrind --tool=callgrind`` counts the same program's instructions the same way whatever else
the machine is doing. Each side runs in a child process under callgrind twice, once with only its
warm-up and once with ``pairs`` more pairs after it; the difference over ``2 * pairs`` is its
instructions per request. The simulator runs natively in its own process (callgrind does not
follow children) and is not counted.

The counts still depend a little on timing (how many answers one turn of the event loop reads),
so they are not exact, but two runs on one machine agree to well under 1 %. Counting is about 50
times slower than running: ``pairs`` stays small. The child's entry point::

    python -m benchmarks.instructions SIDE PAIRS   # the JSON job (base_url, token, ids) on stdin
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from typing import Any

WARMUP = 50
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def available() -> bool:
    """Whether valgrind is installed here."""
    return shutil.which("valgrind") is not None


def count(side: str, pairs: int, job: dict[str, Any]) -> int:
    """The instructions a child process executes for its warm-up plus ``pairs`` pairs of ``side``.

    Raises:
        RuntimeError: when the child fails or callgrind prints no total.
    """
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        side,
        str(pairs),
    ]
    # The job (with the simulator's token) goes over stdin: it is never written to a file.
    done = subprocess.run(command, input=json.dumps(job), capture_output=True, text=True)
    match = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind run of {side!r} failed: {done.stderr[-1000:]}")
    return int(match.group(1))


async def per_request(side: str, pairs: int, jobs: tuple[dict[str, Any], dict[str, Any]]) -> float:
    """Instructions per request of ``side``: the run with ``pairs`` more pairs minus the run without,
    over ``2 * pairs``. ``jobs`` holds fresh interfaces for each of the two runs."""
    without = await asyncio.to_thread(count, side, 0, jobs[0])
    with_pairs = await asyncio.to_thread(count, side, pairs, jobs[1])
    return (with_pairs - without) / (2 * pairs)


async def _child(side: str, pairs: int, job: dict[str, Any]) -> None:
    from benchmarks.overhead import sides  # the same functions the timed rounds run

    run = sides()[side]
    ids: list[str] = job["ids"]
    await run(job["base_url"], job["token"], ids[:WARMUP], job["profile"], 16)
    if pairs:
        await run(job["base_url"], job["token"], ids[WARMUP : WARMUP + pairs], job["profile"], 64)


if __name__ == "__main__":
    asyncio.run(_child(sys.argv[1], int(sys.argv[2]), json.load(sys.stdin)))
