"""A bulk run as a process of its own, for the crash-and-resume test to ``kill -9``.

Usage (the token comes from ``KATAPULT_API_TOKEN``, never the command line)::

    python tests/chaos/bulk_worker.py BASE_URL ITEMS_FILE JOURNAL RESULTS [WINDOW [PROFILE [HORIZON]]]

``ITEMS_FILE`` holds one interface id a line; each gets ``PROFILE`` (``1gbps`` by default).
``WINDOW`` is the server's rate-limit window in seconds (default 60, as on the live API);
``HORIZON`` the ``confirm_horizon`` (default: learned). Every
result is appended to ``RESULTS`` as a JSON line and flushed at once, so that the test sees what
this run reported up to the moment it was killed. Exit status 0 once the run has ended.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from katapult_async import KatapultClient


async def run(
    base_url: str,
    interfaces: list[str],
    journal: Path,
    results: Path,
    window: float,
    profile: str,
    horizon: float | None = None,
) -> None:
    async with KatapultClient(
        base_url=base_url,
        rate_limit_window=window,
        request_timeout=2.0,
        max_retries=5,
        poll_interval=0.05,
        max_poll_interval=0.2,
    ) as client:
        with results.open("a", encoding="utf-8") as out:
            async for result in client.bulk_update_speed_profiles(
                [(interface, profile) for interface in interfaces],
                concurrency=8,
                journal=journal,
                task_timeout=5.0,
                confirm_horizon=horizon,
            ):
                record = {
                    "index": result.index,
                    "interface_id": result.interface_id,
                    "outcome": result.outcome.value,
                    "task_id": result.task.id if result.task is not None else None,
                    "resumed": result.resumed,
                    "error": type(result.error).__name__ if result.error is not None else None,
                    "confirmed": result.confirmed_after_lost_response,
                }
                out.write(json.dumps(record) + "\n")
                out.flush()


def main(argv: list[str]) -> int:
    base_url, items, journal, results = argv[:4]
    window = float(argv[4]) if len(argv) > 4 else 60.0
    profile = argv[5] if len(argv) > 5 else "1gbps"
    horizon = float(argv[6]) if len(argv) > 6 else None
    interfaces = [line.strip() for line in Path(items).read_text().splitlines() if line.strip()]
    asyncio.run(run(base_url, interfaces, Path(journal), Path(results), window, profile, horizon))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
