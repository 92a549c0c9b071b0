"""One input pair's way through a bulk worker: validate, skip a duplicate, resume, or PATCH and wait.

Every way ends in the item's one :class:`~katapult_async.models.UpdateResult`, journaled (except a
result taken from the journal without a request, which is there already).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import attrs

from katapult_async.bulk._journal import _Journal, _Resumable
from katapult_async.bulk._seen import _SeenIndex
from katapult_async.bulk._source import _parse_pair, _texts_of_bad_pair
from katapult_async.errors import (
    DuplicateItemError,
    SpeedProfileAlreadyAssignedError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
    UnconfirmedUpdateError,
)
from katapult_async.models import (
    NetworkInterfaceRef,
    Outcome,
    SpeedProfileRef,
    Task,
    TaskStatus,
    UpdateResult,
)

if TYPE_CHECKING:
    from katapult_async.bulk import SupportsBulkUpdate
    from katapult_async.bulk._engine import _Progress


@attrs.frozen(slots=True)
class _Item:
    """An input pair in progress: its position and the texts its result carries."""

    index: int
    interface_id: str
    speed_profile: str


class _ItemProcessor:
    """Turns one input pair into its result; shared by all the workers of a run.

    Holds what the items of a run share: the client, the options, the duplicate index, the journal
    and the resume state read from it, and the run's counters (for ``resumed`` items).
    """

    def __init__(
        self,
        client: SupportsBulkUpdate,
        *,
        wait: bool,
        timeout: float | None,
        journal: _Journal | None,
        progress: _Progress,
    ) -> None:
        self._client = client
        self._wait = wait
        self._timeout = timeout
        self._journal = journal
        self._resumable: dict[str, _Resumable] | None = (
            journal.resumable if journal is not None else None
        )
        self._progress = progress
        self._seen = _SeenIndex()

    async def process(self, index: int, raw: object) -> UpdateResult:
        """The result of the pair ``raw`` at position ``index`` of the input."""
        try:
            iface, profile = _parse_pair(raw)
        except (TypeError, ValueError) as exc:
            return self._finish(_Item(index, *_texts_of_bad_pair(raw)), Outcome.ERROR, error=exc)
        item = _Item(index, iface.id, str(profile))
        first = self._seen.first_or_add(item.interface_id, index)
        if first is not None:
            error = DuplicateItemError(item.interface_id, index, first)
            return self._finish(item, Outcome.ERROR, error=error)
        if self._resumable:
            entry = self._resumable.pop(item.interface_id, None)
            if entry is not None and entry.speed_profile == item.speed_profile:
                resumed = await self._resume(item, entry)
                if resumed is not None:
                    self._progress.resumed += 1
                    return resumed
        return await self._update(item, iface, profile)

    async def _resume(self, item: _Item, entry: _Resumable) -> UpdateResult | None:
        """The result of an item the journal knows, or ``None`` to send it again."""
        task_id = entry.task_id
        if entry.outcome is not None or not self._wait:
            outcome = entry.outcome or Outcome.SUBMITTED
            task = None
            if task_id is not None:
                status = (
                    TaskStatus.COMPLETED if outcome is Outcome.COMPLETED else TaskStatus.PENDING
                )
                task = Task(id=task_id, status=status)
            self._progress.skipped += 1
            return _result(item, outcome, task=task, resumed=True)
        assert task_id is not None
        seen: Task | None = None
        try:
            # One read first: after a crash most tasks have long finished, and an unknown task
            # is known at once (the poller would take a bare id's not-found for lag and retry).
            seen = final = await self._client.get_task(task_id)
            if final.status is TaskStatus.FAILED:
                raise TaskFailedError(final)
            if final.status is not TaskStatus.COMPLETED:
                final = await self._client.wait_for_task(task_id, timeout=self._timeout)
        except TaskNotFoundError:
            return None  # the API forgot the task: send the PATCH again
        except Exception as exc:
            return self._task_error(item, exc, seen, task_id, resumed=True)
        return self._finish(item, Outcome.COMPLETED, task=final, task_id=task_id, resumed=True)

    async def _update(
        self, item: _Item, iface: NetworkInterfaceRef, profile: SpeedProfileRef
    ) -> UpdateResult:
        try:
            task = await self._client.update_speed_profile(iface, profile)
        except SpeedProfileAlreadyAssignedError as exc:
            if exc.after_lost_response:
                # Our own lost attempt made the assignment; its unseen task may yet fail.
                unconfirmed = UnconfirmedUpdateError(item.interface_id, item.speed_profile)
                unconfirmed.__cause__ = exc
                return self._finish(item, Outcome.ERROR, error=unconfirmed)
            return self._finish(item, Outcome.ALREADY_ASSIGNED)
        except Exception as exc:
            return self._finish(item, Outcome.ERROR, error=exc)
        submitted_at = time.monotonic()
        if not self._wait:
            return self._finish(item, Outcome.SUBMITTED, task=task, task_id=task.id)
        if self._journal is not None:
            self._journal.submitted(item.index, item.interface_id, item.speed_profile, task.id)
        try:
            final = await self._client.poller.wait(
                task, timeout=self._timeout, submitted_at=submitted_at
            )
        except Exception as exc:
            return self._task_error(item, exc, task, task.id, resumed=False)
        return self._finish(item, Outcome.COMPLETED, task=final, task_id=task.id)

    def _task_error(
        self, item: _Item, exc: Exception, task: Task | None, task_id: str, *, resumed: bool
    ) -> UpdateResult:
        """The result of an accepted update whose task failed or could not be followed."""
        if isinstance(exc, TaskFailedError):
            outcome, task = Outcome.FAILED, exc.task
        else:
            outcome = Outcome.ERROR
            if isinstance(exc, TaskTimeoutError) and exc.task is not None:
                task = exc.task
        return self._finish(item, outcome, task=task, error=exc, task_id=task_id, resumed=resumed)

    def _finish(
        self,
        item: _Item,
        outcome: Outcome,
        *,
        task: Task | None = None,
        error: BaseException | None = None,
        task_id: str | None = None,
        resumed: bool = False,
    ) -> UpdateResult:
        """The result of ``item``, journaled (``task_id``: the accepted task, if any)."""
        result = _result(item, outcome, task=task, error=error, resumed=resumed)
        if self._journal is not None:
            self._journal.result(result, task_id)
        return result


def _result(
    item: _Item,
    outcome: Outcome,
    *,
    task: Task | None = None,
    error: BaseException | None = None,
    resumed: bool = False,
) -> UpdateResult:
    return UpdateResult(
        item.interface_id,
        item.speed_profile,
        outcome,
        task=task,
        error=error,
        index=item.index,
        resumed=resumed,
    )
