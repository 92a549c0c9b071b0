"""One input item's way through a bulk worker: validate, skip a duplicate, resume, or PATCH and wait.

Every way ends in the item's one :class:`~katapult_async.models.UpdateResult`, journaled (except a
result taken from the journal without a request, which is there already). Once the run has halted
(``halted`` is set), an item not yet sent is ``SKIPPED`` with the halt's error instead.

A PATCH that may have been applied without its answer reaching us (a lost response, which the
client's retry reveals as ``speed_profile_already_assigned`` with ``after_lost_response``; or a
journaled ``attempt`` with no recorded answer) is confirmed: the item waits out the task horizon,
by which the unseen task has ended, and sends the PATCH again. ``already_assigned`` again means the
profile held; an accepted PATCH means the unseen task failed and put the old profile back, and the
new task is followed as usual.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from katapult_async._plan import profile_matches, profile_text
from katapult_async._rollout import RolloutGate, _Ticket
from katapult_async._schedule import quantile
from katapult_async.bulk._journal import _Journal, _Resumable
from katapult_async.bulk._seen import _SeenIndex
from katapult_async.bulk._source import _parse_pair, _parts_of_bad_pair
from katapult_async.errors import (
    DuplicateItemError,
    RunHaltedError,
    SpeedProfileAlreadyAssignedError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
    UnconfirmedUpdateError,
    VerificationError,
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
    from katapult_async.bulk._options import RunOptions
    from katapult_async.bulk._progress import _Progress
    from katapult_async.bulk._types import SupportsBulkUpdate

DEFAULT_CONFIRM_HORIZON = 10.0
"""Seconds a confirmation waits when no task of the name has been seen finishing yet (live
speed-profile tasks take 2-4 s)."""

SPEED_PROFILE_TASK_NAME = "Change network interface speed profile"
"""The name of the live API's speed-profile tasks, the horizon's name until a task is seen."""

_HORIZON_QUANTILE = 0.99
_HORIZON_MARGIN = 1.5  # on the p99 of the finishes this run saw
_EXPECTED_MARGIN = 2.0  # on the poller's p85 aim, when this run has seen none
_MAX_HORIZON = 120.0
_MAX_CONFIRMATIONS = 3  # confirming PATCHes of one item before it is left unconfirmed
_FINISH_SAMPLES = 64


@attrs.frozen(slots=True)
class _Item:
    """An input item in progress: its position and what its result carries."""

    index: int
    interface_id: str
    speed_profile: SpeedProfileRef | None
    previous: SpeedProfileRef | None = None

    @property
    def profile_text(self) -> str:
        """The requested profile as the journal writes it (id or permalink)."""
        return "" if self.speed_profile is None else str(self.speed_profile)

    @property
    def previous_text(self) -> str | None:
        return None if self.previous is None else str(self.previous)


class _ItemProcessor:
    """Turns one input item into its result; shared by all the workers of a run.

    Holds what the items of a run share: the client, the options, the duplicate index, the journal
    and the resume state read from it, the run's counters (for ``resumed`` items), and the task
    finishing times seen, from which the confirmation horizon is learned.
    """

    def __init__(
        self,
        client: SupportsBulkUpdate,
        options: RunOptions,
        *,
        journal: _Journal | None,
        progress: _Progress,
    ) -> None:
        self._client = client
        # The places of items sending a request (a read, a PATCH); awaiting a task holds none.
        self._sending = asyncio.Semaphore(options.concurrency)
        self._wait = options.wait
        self._timeout = options.task_timeout
        self._journal = journal
        self._resumable: dict[str, _Resumable] | None = (
            journal.resumable if journal is not None else None
        )
        self._progress = progress
        self._seen = _SeenIndex()
        self._record_previous = options.record_previous
        self._confirm_horizon = options.confirm_horizon
        self._task_name = SPEED_PROFILE_TASK_NAME
        self._finishes: deque[float] = deque(maxlen=_FINISH_SAMPLES)
        if journal is not None:  # a resumed run starts from the tasks its journal saw end
            self._finishes.extend(journal.durations)
        self.confirmations = 0
        """Confirming PATCHes sent (each costs one request beyond the item's own)."""
        self.budget_known: Callable[[], None] | None = None
        """Called (once: the engine then clears it) when a PATCH is answered with the budget
        known, so that items awaiting tasks stop holding their sending places."""
        self.halted: RunHaltedError | None = None
        """Set when the run halts: from then on, items not yet sent are ``SKIPPED`` with it."""
        self.gate: RolloutGate | None = None
        """A rollout's gate, which each item passes before its first request and tells its
        result (items that send nothing do not meet it)."""

    # --- the confirmation horizon -----------------------------------------------------------

    def horizon(self) -> float:
        """Seconds to wait before a confirming PATCH: by then the unseen task has ended.

        ``confirm_horizon`` when given; else 1.5 x the p99 of the submission-to-seen-done times of
        this run's tasks and of the tasks its journal recorded ending (so that a resumed run
        confirms an unanswered attempt as soon as a run that saw them would), or
        else 2 x the poller's learned aim for the task name (its p85), or else
        :data:`DEFAULT_CONFIRM_HORIZON`; at most 120 s.
        """
        if self._confirm_horizon is not None:
            return self._confirm_horizon
        if self._finishes:
            learned = _HORIZON_MARGIN * quantile(self._finishes, _HORIZON_QUANTILE)
        else:
            expected = self._client.poller.expected_duration(self._task_name)
            if expected is None:
                return DEFAULT_CONFIRM_HORIZON
            learned = _EXPECTED_MARGIN * expected
        return min(_MAX_HORIZON, learned)

    def _saw(self, task: Task) -> None:
        if task.name:
            self._task_name = task.name

    # --- one item ---------------------------------------------------------------------------

    async def process(self, index: int, raw: object) -> UpdateResult:
        """The result of the item ``raw`` at position ``index`` of the input."""
        try:
            iface, profile, previous = _parse_pair(raw)
        except (TypeError, ValueError) as exc:
            return self._finish(_Item(index, *_parts_of_bad_pair(raw)), Outcome.ERROR, error=exc)
        item = _Item(index, iface.id, profile, previous)
        if self.halted is not None:
            return self._skip(item)
        first = self._seen.first_or_add(item.interface_id, index)
        if first is not None:
            error = DuplicateItemError(item.interface_id, index, first)
            return self._finish(item, Outcome.ERROR, error=error)
        attempted = False
        if self._resumable:
            entry = self._resumable.pop(item.interface_id, None)
            if entry is not None and entry.speed_profile == item.profile_text:
                if item.previous is None and entry.previous_speed_profile is not None:
                    recorded = SpeedProfileRef.parse(entry.previous_speed_profile)
                    item = attrs.evolve(item, previous=recorded)
                if entry.attempted:
                    attempted = True  # a PATCH went out unanswered: a 422 needs confirming
                else:
                    resumed = await self._resume(item, entry)
                    if resumed is not None:
                        self._progress.resumed += 1
                        return resumed
        return await self._update(item, iface, profile, attempted=attempted)

    async def _resume(self, item: _Item, entry: _Resumable) -> UpdateResult | None:
        """The result of an item the journal knows, or ``None`` to send it again."""
        task_id = entry.task_id
        if entry.outcome is not None or not self._wait:
            outcome = entry.outcome or Outcome.SUBMITTED
            task = entry.task
            if task is None and task_id is not None:  # a journal written before tasks were whole
                status = (
                    TaskStatus.COMPLETED if outcome is Outcome.COMPLETED else TaskStatus.PENDING
                )
                task = Task(id=task_id, status=status)
            self._progress.free += 1
            return _result(item, outcome, task=task, resumed=True, confirmed=entry.confirmed)
        assert task_id is not None
        seen: Task | None = entry.task
        try:
            # One read first: after a crash most tasks have long finished, and an unknown task
            # is known at once (the poller would take a bare id's not-found for lag and retry).
            async with self._sending:
                seen = final = await self._client.get_task(task_id)
            self._saw(final)
            if final.status is TaskStatus.FAILED:
                raise TaskFailedError(final)
            if final.status is not TaskStatus.COMPLETED:
                final = await self._client.wait_for_task(task_id, task_timeout=self._timeout)
        except TaskNotFoundError:
            return None  # the API forgot the task: send the PATCH again
        except Exception as exc:
            return self._task_error(item, exc, seen, task_id, resumed=True)
        return self._finish(item, Outcome.COMPLETED, task=final, task_id=task_id, resumed=True)

    async def _update(
        self,
        item: _Item,
        iface: NetworkInterfaceRef,
        profile: SpeedProfileRef,
        *,
        attempted: bool,
    ) -> UpdateResult:
        if self.halted is not None:  # halted while this item was consulting the journal
            return self._skip(item)
        gate = self.gate
        if gate is None:
            return await self._send(item, iface, profile, attempted=attempted, ticket=None)
        ticket = await gate.admit()  # a rollout: wait for the canary, or the room in flight
        if not isinstance(ticket, _Ticket):
            return self._skip(item)  # the run halted meanwhile (the gate's halt, or another)
        result = await self._send(item, iface, profile, attempted=attempted, ticket=ticket)
        await gate.finish(ticket, result)
        return result

    async def _send(
        self,
        item: _Item,
        iface: NetworkInterfaceRef,
        profile: SpeedProfileRef,
        *,
        attempted: bool,
        ticket: _Ticket | None,
    ) -> UpdateResult:
        """Read the previous profile if asked, PATCH (confirming a lost answer), wait, verify."""
        if self._record_previous and item.previous is None and not attempted:
            # (After an unanswered attempt, the interface may show our own change: not read.)
            try:
                async with self._sending:
                    current = await self._client.get_network_interface(iface)
            except Exception as exc:
                return self._finish(item, Outcome.ERROR, error=exc)
            if current.speed_profile is not None:
                item = attrs.evolve(item, previous=SpeedProfileRef(id=current.speed_profile.id))
        lost = attempted  # a PATCH of ours may have landed without our seeing its task
        confirming = False  # the PATCH about to be sent is a confirmation
        confirm_next = False  # the next PATCH must wait out the horizon: it confirms
        last: BaseException | None = None
        poller = self._client.poller
        journal = self._journal
        for _ in range(_MAX_CONFIRMATIONS + 1):
            if confirm_next:
                await asyncio.sleep(self.horizon())
                self.confirmations += 1
                confirming = True
            await self._sending.acquire()
            try:
                if self.halted is not None and not confirming:
                    return self._skip(item)  # halted while this item waited for its place
                if journal is not None:
                    journal.attempt(
                        item.index, item.interface_id, item.profile_text, item.previous_text
                    )
                try:
                    task = await self._client.update_speed_profile(iface, profile)
                    # Once the budget is known, the engine starts the max_tasks workers that
                    # let items wait for their tasks without a place. Until then (a server
                    # without rate-limit headers, no 429 yet) only ``concurrency`` workers run,
                    # one item each, as in earlier releases: the PATCHes of the others would
                    # otherwise all go out before a 429 tells the limit.
                    if self.budget_known is not None and not self._budget_unknown():
                        self.budget_known()
                except SpeedProfileAlreadyAssignedError as exc:
                    if exc.after_lost_response or (lost and not confirming):
                        # Our own unseen attempt made the assignment; its task may yet fail:
                        # confirm.
                        lost = confirm_next = True
                        last = exc
                        continue
                    return self._finish(item, Outcome.ALREADY_ASSIGNED, confirmed=confirming)
                except Exception as exc:
                    if confirming:
                        unconfirmed = UnconfirmedUpdateError(item.interface_id, item.profile_text)
                        unconfirmed.__cause__ = exc
                        return self._finish(item, Outcome.ERROR, error=unconfirmed)
                    return self._finish(item, Outcome.ERROR, error=exc)
            finally:
                self._sending.release()
            break
        else:
            unconfirmed = UnconfirmedUpdateError(item.interface_id, item.profile_text)
            unconfirmed.__cause__ = last
            return self._finish(item, Outcome.ERROR, error=unconfirmed)
        submitted_at = poller.now()
        self._saw(task)
        if not self._wait:
            return self._finish(
                item, Outcome.SUBMITTED, task=task, task_id=task.id, confirmed=confirming
            )
        if journal is not None:
            journal.submitted(
                item.index, item.interface_id, item.profile_text, task, item.previous_text
            )
        try:
            final = await poller.wait(task, timeout=self._timeout, submitted_at=submitted_at)
        except Exception as exc:
            return self._task_error(item, exc, task, task.id, resumed=False, confirmed=confirming)
        self._finishes.append(poller.now() - submitted_at)
        verified = False
        if ticket is not None and self.gate is not None and self.gate.verify(ticket):
            wrong = await self._read_back(item, iface)
            if wrong is not None:
                return self._finish(
                    item,
                    Outcome.ERROR,
                    task=final,
                    error=wrong,
                    task_id=task.id,
                    confirmed=confirming,
                )
            verified = True
        return self._finish(
            item,
            Outcome.COMPLETED,
            task=final,
            task_id=task.id,
            confirmed=confirming,
            verified=verified,
        )

    async def _read_back(self, item: _Item, iface: NetworkInterfaceRef) -> Exception | None:
        """Read a completed item's interface: ``None`` when it has the profile asked for, else
        a :class:`VerificationError` (or the error that kept it from being read)."""
        try:
            async with self._sending:
                current = await self._client.get_network_interface(iface)
        except Exception as exc:
            return exc
        if profile_matches(current.speed_profile, item.speed_profile):
            return None
        return VerificationError(
            item.interface_id, item.profile_text, profile_text(current.speed_profile)
        )

    def _budget_unknown(self) -> bool:
        """Whether the client's rate limiter knows no limit yet (read from the limiter itself
        when the client has one: a snapshot scans the whole start log)."""
        limiter = getattr(self._client, "limiter", None)
        if limiter is not None:
            return limiter.limit is None
        return self._client.rate_limit.limit is None

    def _skip(self, item: _Item) -> UpdateResult:
        """The ``SKIPPED`` result of an item a halted run does not start (nothing is sent)."""
        assert self.halted is not None
        self._progress.free += 1
        return self._finish(item, Outcome.SKIPPED, error=self.halted)

    def _task_error(
        self,
        item: _Item,
        exc: Exception,
        task: Task | None,
        task_id: str,
        *,
        resumed: bool,
        confirmed: bool = False,
    ) -> UpdateResult:
        """The result of an accepted update whose task failed or could not be followed."""
        if isinstance(exc, TaskFailedError):
            outcome, task = Outcome.FAILED, exc.task
        else:
            outcome = Outcome.ERROR
            if isinstance(exc, TaskTimeoutError) and exc.task is not None:
                task = exc.task
        return self._finish(
            item,
            outcome,
            task=task,
            error=exc,
            task_id=task_id,
            resumed=resumed,
            confirmed=confirmed,
        )

    def _finish(
        self,
        item: _Item,
        outcome: Outcome,
        *,
        task: Task | None = None,
        error: BaseException | None = None,
        task_id: str | None = None,
        resumed: bool = False,
        confirmed: bool = False,
        verified: bool = False,
    ) -> UpdateResult:
        """The result of ``item``, journaled (``task_id``: the accepted task, if any)."""
        result = _result(
            item,
            outcome,
            task=task,
            error=error,
            resumed=resumed,
            confirmed=confirmed,
            verified=verified,
        )
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
    confirmed: bool = False,
    verified: bool = False,
) -> UpdateResult:
    return UpdateResult(
        item.interface_id,
        item.speed_profile,
        outcome,
        task=task,
        error=error,
        index=item.index,
        resumed=resumed,
        previous_speed_profile=item.previous,
        confirmed_after_lost_response=confirmed,
        verified=verified,
    )
