"""``concurrency`` bounds the items sending; an item awaiting its task holds no place.

So a job whose requests fit in the rate-limit budget sends every PATCH at once and ends with
its slowest task, whatever ``concurrency`` is; ``max_tasks`` bounds the tasks awaited at once,
and ``max_tasks=0`` keeps the place until the task ends (as in earlier releases).
"""

from __future__ import annotations

import pytest

from katapult_async.bulk import bulk_update
from katapult_async.bulk._progress import budget_eta
from katapult_async.models import BulkProgress, Outcome
from katapult_async.testing import KatapultSimulator

from .helpers import make_client, patched


@pytest.mark.parametrize(
    ("max_tasks", "limit", "sent_at_first"),
    [(None, 1000, 10), (3, 1000, 5), (0, 1000, 2), (None, None, 2)],
)
async def test_items_awaiting_their_task_hold_no_place(
    max_tasks: int | None, limit: int | None, sent_at_first: int
) -> None:
    # (limit None: a server without rate-limit headers, the budget unknown: an item keeps its
    # place while it waits, as in earlier releases, so that a limit learned only from a 429
    # does not meet every PATCH of the run already sent.)
    async with KatapultSimulator(
        task_duration=0.6, seed=3, rate_limit=limit, rate_limit_window=60.0
    ) as sim:
        ids = sim.add_interfaces(10)
        options = {} if max_tasks is None else {"max_tasks": max_tasks}
        async with make_client(sim, poll_interval=0.05, max_poll_interval=0.1) as client:
            outcomes = []
            sent: int | None = None
            async for result in bulk_update(
                client, [(i, "1gbps") for i in ids], concurrency=2, **options
            ):
                if (
                    sent is None
                ):  # every task lasts 0.6 s: the first ends long after the PATCHes went
                    sent = sum(patched(sim).values())
                outcomes.append(result.outcome)
    assert sent == sent_at_first
    assert outcomes == [Outcome.COMPLETED] * 10
    assert sum(patched(sim).values()) == 10


def test_max_tasks_is_checked_at_once() -> None:
    with pytest.raises(ValueError, match="max_tasks"):
        bulk_update(object(), [], max_tasks=-1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("need", "left", "refills_in", "expected"),
    [
        (50, 100, 1.0, (0, None)),  # the budget holds them all: the tasks set the pace
        (150, 100, 1.5, (1, 1.5)),  # one more window, opening when the budget refills
        (450, 50, 0.5, (4, 0.5 + 3 * 2.0)),
        (10, None, None, (None, None)),  # the limit unknown
    ],
)
def test_the_eta_follows_the_budget(
    need: int,
    left: int | None,
    refills_in: float | None,
    expected: tuple[int | None, float | None],
) -> None:
    limit = None if left is None else 100
    assert budget_eta(need, left, refills_in, limit, 2.0) == expected


async def test_progress_says_how_many_windows_are_left() -> None:
    # 30 items at 10 requests per second: 60 requests, six windows; the snapshots count them down
    async with KatapultSimulator(task_duration=0.05, rate_limit=10, rate_limit_window=1.0) as sim:
        ids = sim.add_interfaces(30)
        snapshots: list[BulkProgress] = []
        async with make_client(sim, rate_limit_window=1.0) as client:
            async for _ in bulk_update(
                client, [(i, "1gbps") for i in ids], concurrency=5, on_progress=snapshots.append
            ):
                pass
    windows = [s.windows_left for s in snapshots if s.windows_left is not None]
    assert max(windows) >= 3
    assert windows[-1] == 0
    early = next(s for s in snapshots if s.windows_left and s.windows_left >= 3)
    assert early.eta is not None
    assert early.refills_in is not None
    assert early.eta >= early.refills_in + 2 * 1.0  # the later windows, not a rate
    assert snapshots[-1].eta == 0.0
