"""Clean shutdown: closing the client or cancelling a bulk run mid-flight leaves nothing behind.

The simulator serves from its own thread and loop (:class:`SimulatorThread`), so the test's event
loop holds only the client's tasks: after a cancel or a close, it must hold none but the test's own,
and a forced garbage collection must find no unclosed session, connector, transport or file (no
``ResourceWarning``, no "Unclosed ..." report to the loop's exception handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from katapult_async import KatapultClient
from katapult_async.models import Outcome, UpdateResult
from katapult_async.testing import FaultKind
from tests.chaos.simthread import SimulatorThread

PATCH_SUFFIX = "/update_speed_profile"


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    # Long tasks: once a PATCH is answered, its poll sleeps for a while.
    with SimulatorThread(task_duration=3.0, seed=5) as thread:
        yield thread


def make_client(sim: SimulatorThread, **options: Any) -> KatapultClient:
    options.setdefault("poll_interval", 0.5)
    options.setdefault("max_poll_interval", 1.0)
    options.setdefault("request_timeout", 10.0)
    return KatapultClient(sim.token, base_url=sim.base_url, **options)


@pytest.fixture
async def loop_reports() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the running loop's exception handler (aiohttp's "Unclosed ..." reports)."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    try:
        yield reports
    finally:
        loop.set_exception_handler(previous)


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def assert_nothing_left(reports: list[dict[str, Any]]) -> None:
    """No task but ours, and garbage collection finds nothing unclosed."""
    # Connections closing finish on the next loop iterations; give them a few.
    for _ in range(5):
        await asyncio.sleep(0)
    leftover = other_tasks()
    assert not leftover, f"tasks left behind: {leftover}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
        gc.collect()
    await asyncio.sleep(0)
    resource = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not resource, [str(w.message) for w in resource]
    unclosed = [c.get("message") for c in reports if "nclosed" in str(c.get("message"))]
    assert not unclosed, unclosed
    assert not reports, reports


def patches_answered(sim: SimulatorThread) -> int:
    return sum(1 for r in sim.requests() if r.method == "PATCH" and r.path.endswith(PATCH_SUFFIX))


def midflight_reached(sim: SimulatorThread, answered: int = 6) -> bool:
    """Every slow PATCH has arrived (the simulator logs them only once answered) and
    ``answered`` others were answered, so their polls are asleep."""
    return not sim.call(lambda: sim.sim.faults) and patches_answered(sim) >= answered


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def midflight(sim: SimulatorThread) -> list[str]:
    """Interfaces for a run in which some PATCHes hang (slow) while others' polls sleep."""
    return sim.add_interfaces(40)


async def start_bulk(
    client: KatapultClient,
    sim: SimulatorThread,
    ids: list[str],
    results: list[UpdateResult],
    **options: Any,
) -> asyncio.Task[None]:
    """Start a bulk run in which the first 6 PATCHes hang in the simulator."""
    # One call first: the limiter lets a single request go until it has seen a response.
    await client.list_speed_profiles(sub_domain="acme")
    sim.inject(FaultKind.SLOW_RESPONSE, times=6, method="PATCH", delay=2.0)

    async def consume() -> None:
        async for result in client.bulk_update_speed_profiles(
            [(i, "1gbps") for i in ids], concurrency=12, **options
        ):
            results.append(result)

    return asyncio.create_task(consume())


async def test_cancelling_a_bulk_run_midflight_leaves_nothing(
    sim: SimulatorThread,
    midflight: list[str],
    loop_reports: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    results: list[UpdateResult] = []
    journal = tmp_path / "run.journal.jsonl"
    async with make_client(sim) as client:
        runner = await start_bulk(client, sim, midflight, results, journal=journal)
        # 12 PATCHes sent: 6 hang in the simulator, 6 were accepted and their polls now sleep.
        await wait_until(lambda: midflight_reached(sim))
        await asyncio.sleep(0.1)
        assert not results
        cancelled_at = time.monotonic()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert time.monotonic() - cancelled_at < 0.5, "cancelling waited for polls or PATCHes"
        # Nothing more is sent once the run is cancelled (polls were due within 0.5 s), and the
        # client still works.
        await asyncio.sleep(0.6)
        late = [r for r in sim.requests() if r.at > cancelled_at]
        assert not late, late
        profiles = await client.list_speed_profiles(sub_domain="acme")
        assert profiles
    await assert_nothing_left(loop_reports)
    assert journal.read_text().count('"submitted"') >= 6


async def test_closing_the_client_midflight_ends_the_run_with_one_result_each(
    sim: SimulatorThread, midflight: list[str], loop_reports: list[dict[str, Any]]
) -> None:
    results: list[UpdateResult] = []
    client = make_client(sim, max_retries=2)
    runner = await start_bulk(client, sim, midflight, results)
    await wait_until(lambda: midflight_reached(sim))
    await asyncio.sleep(0.1)
    await client.close()
    # The polls asleep wake up to a closed client: every item still gets exactly one result.
    await asyncio.wait_for(runner, 10)
    assert sorted(r.index for r in results) == list(range(len(midflight)))
    assert {r.outcome for r in results} == {Outcome.ERROR}
    await assert_nothing_left(loop_reports)


async def test_closing_the_client_under_calls_in_flight(
    sim: SimulatorThread, loop_reports: list[dict[str, Any]]
) -> None:
    ids = sim.add_interfaces(6)
    client = make_client(sim, max_retries=1)
    await client.list_speed_profiles(sub_domain="acme")
    sim.inject(FaultKind.SLOW_RESPONSE, times=3, method="PATCH", delay=2.0)
    calls = [asyncio.create_task(client.update_speed_profile(i, "1gbps", wait=True)) for i in ids]
    await wait_until(lambda: midflight_reached(sim, 3))
    await asyncio.sleep(0.1)
    await client.close()
    outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_task("task_x")
    await client.close()  # twice is fine
    await assert_nothing_left(loop_reports)


async def test_cancelling_callers_queued_in_the_rate_limiter(
    sim: SimulatorThread, loop_reports: list[dict[str, Any]]
) -> None:
    (iface,) = sim.add_interfaces(1)
    async with make_client(sim, rate_limit=3, rate_limit_window=0.5) as client:
        task = await client.update_speed_profile(iface, "1gbps")
        waiting = [asyncio.create_task(client.get_task(task.id)) for _ in range(10)]
        await asyncio.sleep(0.05)
        for call in waiting:
            call.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        # The limiter is not left locked or counting the cancelled calls.
        started = time.monotonic()
        assert (await client.get_task(task.id)).id == task.id
        assert time.monotonic() - started < 1.0
    await assert_nothing_left(loop_reports)


async def test_an_unused_client_closes_cleanly(loop_reports: list[dict[str, Any]]) -> None:
    client = KatapultClient("t" * 24, base_url="http://127.0.0.1:9/core/v1")
    await client.close()
    async with KatapultClient("t" * 24, base_url="http://127.0.0.1:9/core/v1"):
        pass
    await assert_nothing_left(loop_reports)


async def test_a_callers_session_stays_open_and_usable(
    sim: SimulatorThread, midflight: list[str], loop_reports: list[dict[str, Any]]
) -> None:
    results: list[UpdateResult] = []
    async with aiohttp.ClientSession() as session:
        client = make_client(sim, session=session)
        runner = await start_bulk(client, sim, midflight, results)
        await wait_until(lambda: midflight_reached(sim))
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await client.close()
        assert not session.closed
        # Still usable: directly, and by a new client.
        async with session.get(sim.sim.admin_url + "/state") as resp:
            assert resp.status == 200
            await resp.read()
        async with make_client(sim, session=session) as again:
            assert await again.list_speed_profiles(sub_domain="acme")
        assert not session.closed
    await assert_nothing_left(loop_reports)


async def test_the_leak_detector_sees_an_unclosed_session(
    loop_reports: list[dict[str, Any]],
) -> None:
    # The checks above are only worth something if they catch the real thing.
    sessions = [aiohttp.ClientSession()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the one `clear()` raises at once
        sessions.clear()
    with pytest.raises(AssertionError, match="nclosed"):
        await assert_nothing_left(loop_reports)
    loop_reports.clear()
    straggler = asyncio.create_task(asyncio.sleep(10))
    with pytest.raises(AssertionError, match="tasks left behind"):
        await assert_nothing_left(loop_reports)
    straggler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await straggler
