"""Helpers of the bulk tests: a client with quick polling, and what the simulator saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from katapult_async.client import KatapultClient
from katapult_async.models import UpdateResult
from katapult_async.testing import KatapultSimulator

PATCH_PATH = "update_speed_profile"
TASK_PATH = "/tasks/"


def make_client(sim: KatapultSimulator, **options: Any) -> KatapultClient:
    options.setdefault("poll_interval", 0.02)
    options.setdefault("max_poll_interval", 0.05)
    options.setdefault("max_retries", 2)
    return KatapultClient(sim.token, base_url=sim.base_url, **options)


async def collect(results: AsyncIterator[UpdateResult]) -> list[UpdateResult]:
    return [result async for result in results]


def by_index(results: list[UpdateResult]) -> dict[int, UpdateResult]:
    table = {result.index: result for result in results}
    assert len(table) == len(results), "an index got more than one result"
    return table


def patched(sim: KatapultSimulator) -> Counter[str]:
    """How many PATCHes the simulator received per interface id."""
    return Counter(
        request.body["virtual_machine_network_interface"]["id"]
        for request in sim.requests
        if request.method == "PATCH" and PATCH_PATH in request.path
    )


def polls(sim: KatapultSimulator) -> list[str]:
    return [
        request.query.get("task[id]", request.path)
        for request in sim.requests
        if request.method == "GET" and request.path.startswith("/core/v1" + TASK_PATH)
    ]


def read_journal(path: Path, *, runs: bool = False) -> list[dict[str, Any]]:
    """The journal's lines as dicts; its run boundaries only with ``runs=True``."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if runs or line.get("event") != "run"]


def bulk_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still alive that run code of the bulk package."""
    import katapult_async.bulk as bulk_package

    package_dir = Path(bulk_package.__file__).parent
    leftover = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and Path(code.co_filename).parent == package_dir:
            leftover.append(task)
    return leftover


def open_fds_to(path: Path) -> int:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():  # pragma: no cover - not Linux
        return 0
    count = 0
    for entry in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(entry) == str(path):
                count += 1
    return count


def unfinish(path: Path) -> None:
    """Drop the journal's last line, its run's ``finished`` boundary: as if the process had been
    killed right after the last result, so that a rerun resumes the run."""
    lines = path.read_text().splitlines(keepends=True)
    last = json.loads(lines[-1])
    assert last == {**last, "event": "run", "status": "finished"}, last
    path.write_text("".join(lines[:-1]))
