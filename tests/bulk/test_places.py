"""``concurrency`` bounds the items sending; an item awaiting its task holds no place.

So a job whose requests fit in the rate-limit budget sends every PATCH at once and ends with
its slowest task, whatever ``concurrency`` is; ``max_tasks`` bounds the tasks awaited at once,
and ``max_tasks=0`` keeps the place until the task ends (as in earlier releases).
"""

from __future__ import annotations

import pytest

from katapult_async.bulk import bulk_update
from katapult_async.models import Outcome
from katapult_async.testing import KatapultSimulator

from .helpers import make_client, patched


@pytest.mark.parametrize(("max_tasks", "sent_at_first"), [(None, 10), (3, 5), (0, 2)])
async def test_items_awaiting_their_task_hold_no_place(
    max_tasks: int | None, sent_at_first: int
) -> None:
    async with KatapultSimulator(task_duration=0.6, seed=3) as sim:
        ids = sim.add_interfaces(10)
        options = {} if max_tasks is None else {"max_tasks": max_tasks}
        async with make_client(sim, poll_interval=0.05, max_poll_interval=0.1) as client:
            outcomes = []
            sent: int | None = None
            async for result in bulk_update(
                client, [(i, "1gbps") for i in ids], concurrency=2, **options
            ):
                if sent is None:  # every task lasts 0.6 s: the first ends long after the PATCHes went
                    sent = sum(patched(sim).values())
                outcomes.append(result.outcome)
    assert sent == sent_at_first
    assert outcomes == [Outcome.COMPLETED] * 10
    assert sum(patched(sim).values()) == 10


def test_max_tasks_is_checked_at_once() -> None:
    with pytest.raises(ValueError, match="max_tasks"):
        bulk_update(object(), [], max_tasks=-1)  # type: ignore[arg-type]
