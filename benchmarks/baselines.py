"""The baselines the scenarios compare against, written the way a typical user would write them.

* :func:`bare_pairs`: a bare aiohttp loop issuing PATCH + GET task pairs and parsing the JSON by
  hand: no limiter, no retries, no models. The floor for the client's CPU overhead.
* :func:`naive_bulk`: aiohttp plus ``backoff.on_exception(backoff.expo, ...)`` on 429, ignoring
  ``total_permitted`` and the rate-limit headers, polling every task once a second.
* :func:`fixed_poll_bulk`: our client for the requests, but fixed 1 s polling instead of the
  learned schedule (isolates the poller).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import aiohttp
import backoff

from katapult_async import KatapultClient

__all__ = [
    "PATCH_PATH",
    "TASK_PATH",
    "NaiveOutcome",
    "bare_pairs",
    "fixed_poll_bulk",
    "naive_bulk",
    "run_workers",
]

PATCH_PATH = (
    "/virtual_machine_network_interfaces/virtual_machine_network_interface/update_speed_profile"
)
TASK_PATH = "/tasks/task"


async def run_workers(items: Iterable[str], concurrency: int, handle: Callable[[str], Any]) -> None:
    """Run ``handle(item)`` for every item with ``concurrency`` worker coroutines."""
    iterator: Iterator[str] = iter(items)

    async def worker() -> None:
        for item in iterator:
            await handle(item)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def bare_pairs(
    base_url: str, token: str, interfaces: Iterable[str], profile: str, concurrency: int
) -> int:
    """PATCH each interface, then GET its task once; returns the number of errors."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    patch_url = base_url + PATCH_PATH
    task_url = base_url + TASK_PATH
    errors = 0
    connector = aiohttp.TCPConnector(limit=512)  # the same pool size as the client's own session
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def pair(interface_id: str) -> None:
            nonlocal errors
            body = {
                "virtual_machine_network_interface": {"id": interface_id},
                "speed_profile": {"permalink": profile},
            }
            async with session.patch(patch_url, json=body) as resp:
                data = await resp.json()
                if resp.status != 200:
                    errors += 1
                    return
            task_id = data["task"]["id"]
            async with session.get(task_url, params={"task[id]": task_id}) as resp:
                data = await resp.json()
                if resp.status != 200:
                    errors += 1
                    return
            if data["task"]["status"] not in ("pending", "running", "completed"):
                errors += 1

        await run_workers(interfaces, concurrency, pair)
    return errors


class RateLimitedError(Exception):
    """A 429, as the naive user's code raises it."""


class NaiveOutcome:
    """Counters of a :func:`naive_bulk` run."""

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.errors = 0
        self.retries = 0


async def naive_bulk(
    base_url: str,
    token: str,
    interfaces: Iterable[str],
    profile: str,
    concurrency: int,
    *,
    poll_interval: float = 1.0,
    max_time: float = 120.0,
) -> NaiveOutcome:
    """The typical hand-written bulk job: back off exponentially on 429, poll every second."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    patch_url = base_url + PATCH_PATH
    task_url = base_url + TASK_PATH
    outcome = NaiveOutcome()

    def count_retry(_details: Any) -> None:
        outcome.retries += 1

    async with aiohttp.ClientSession(headers=headers) as session:

        @backoff.on_exception(
            backoff.expo, RateLimitedError, max_time=max_time, on_backoff=count_retry
        )
        async def call(method: str, url: str, **kwargs: Any) -> Any:
            async with session.request(method, url, **kwargs) as resp:
                if resp.status == 429:
                    raise RateLimitedError
                resp.raise_for_status()
                return await resp.json()

        async def update(interface_id: str) -> None:
            body = {
                "virtual_machine_network_interface": {"id": interface_id},
                "speed_profile": {"permalink": profile},
            }
            try:
                data = await call("PATCH", patch_url, json=body)
                task_id = data["task"]["id"]
                while True:
                    await asyncio.sleep(poll_interval)
                    data = await call("GET", task_url, params={"task[id]": task_id})
                    status = data["task"]["status"]
                    if status == "completed":
                        outcome.completed += 1
                        return
                    if status == "failed":
                        outcome.failed += 1
                        return
            except (RateLimitedError, aiohttp.ClientError):
                outcome.errors += 1

        await run_workers(interfaces, concurrency, update)
    return outcome


async def fixed_poll_bulk(
    client: KatapultClient,
    interfaces: Iterable[str],
    profile: str,
    concurrency: int,
    *,
    poll_interval: float = 1.0,
) -> dict[str, tuple[float, int]]:
    """PATCH with our client, then poll every ``poll_interval`` s until done.

    Returns:
        ``{task_id: (monotonic time the wait returned, polls)}``.
    """
    returned: dict[str, tuple[float, int]] = {}

    async def update(interface_id: str) -> None:
        task = await client.update_speed_profile(interface_id, profile)
        polls = 0
        while not task.status.is_terminal:
            await asyncio.sleep(poll_interval)
            task = await client.get_task(task.id)
            polls += 1
        returned[task.id] = (time.monotonic(), polls)

    await run_workers(interfaces, concurrency, update)
    return returned
