"""The errors of waiting for a task and of bulk runs, rollouts and reverts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from katapult_async.errors._base import KatapultError

if TYPE_CHECKING:
    from katapult_async._task import Task


class TaskFailedError(KatapultError):
    """The task ended with status ``failed``. ``task`` is the final task."""

    def __init__(self, task: Task) -> None:
        self.task = task
        super().__init__(f"task {task.id} ({task.name or 'unnamed'}) failed")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task,))


class TaskTimeoutError(KatapultError, TimeoutError):
    """The task did not finish in time.

    Attributes:
        task: The last task observed (or ``None`` if it was never seen).
        waited: Seconds waited before giving up.
    """

    def __init__(self, task: Task | None, waited: float, task_id: str | None = None) -> None:
        self.task = task
        self.waited = waited
        ident = task.id if task is not None else task_id
        state = f", last seen {task.status.value} at {task.progress}%" if task is not None else ""
        super().__init__(f"task {ident} did not finish within {waited:.1f}s{state}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task, self.waited))


class DuplicateItemError(KatapultError, ValueError):
    """An interface appeared again in the same bulk run; only its first item is sent.

    Attributes:
        interface_id: The repeated interface id.
        index: The position of the repeated item.
        first_index: The position of the item that is being (or was) sent.
    """

    def __init__(self, interface_id: str, index: int, first_index: int) -> None:
        self.interface_id = interface_id
        self.index = index
        self.first_index = first_index
        super().__init__(
            f"item {index}: interface {interface_id} duplicates item {first_index} "
            "(each interface is updated at most once per run)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id, self.index, self.first_index))


class UnconfirmedUpdateError(KatapultError):
    """The update landed, but its response was lost and the confirmation could not be made.

    A PATCH whose response was lost (a dropped connection, a timeout) was retried and the API
    answered ``speed_profile_already_assigned``: the lost attempt evidently made the assignment,
    but the client never learnt the id of the task that carries it out, and a task that fails
    puts the interface's previous profile back. The bulk engine confirms such an update itself:
    it waits out the task horizon and sends the PATCH again (``already_assigned`` again: the
    assignment held; accepted: the unseen task failed, and the new task is followed). Only when
    that confirming PATCH itself fails (its retries exhausted) is the item an ``ERROR`` with this
    error (its ``__cause__`` is the last answer or failure). A rerun confirms it the same way.

    Attributes:
        interface_id: The interface whose update is unconfirmed.
        speed_profile: The profile asked for, as given.
    """

    def __init__(self, interface_id: str, speed_profile: str) -> None:
        self.interface_id = interface_id
        self.speed_profile = speed_profile
        super().__init__(
            f"interface {interface_id}: the update to {speed_profile} was applied but its "
            "response was lost, and the update could not be confirmed; rerun to confirm"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id, self.speed_profile))


class VerificationError(KatapultError):
    """A rollout read an updated interface back and found another profile than the one set.

    The task completed, but the interface does not have the requested profile (a task that did
    nothing, or a change made in between): the item's result is an ``ERROR`` with this error.

    Attributes:
        interface_id: The interface read back.
        expected: The profile requested (id or permalink, as given).
        actual: The profile the interface has (its permalink, else its id; ``None`` for none).
    """

    def __init__(self, interface_id: str, expected: str, actual: str | None) -> None:
        self.interface_id = interface_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"interface {interface_id}: read back after its task completed, it has "
            f"{actual or 'no speed profile'}, not {expected}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id, self.expected, self.actual))


class DriftedError(KatapultError):
    """A revert found the interface changed since the run: it is left alone (``SKIPPED``).

    The interface has neither the profile the run set nor the one before it, so someone else
    changed it in between; ``force=True`` reverts it anyway.

    Attributes:
        interface_id: The interface.
        expected: The profile the run set (as journaled).
        actual: The profile it has now (its permalink, else its id; ``None`` for none).
        previous: The profile the revert would have put back.
    """

    def __init__(self, interface_id: str, expected: str, actual: str | None, previous: str) -> None:
        self.interface_id = interface_id
        self.expected = expected
        self.actual = actual
        self.previous = previous
        super().__init__(
            f"interface {interface_id}: has {actual or 'no speed profile'}, the run set "
            f"{expected}; changed since, so not reverted to {previous} (force to revert it)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id, self.expected, self.actual, self.previous))


class NoPreviousProfileError(KatapultError):
    """A revert has no previous profile for an interface the run changed (``SKIPPED``).

    The journaled run did not record one: apply a plan, or use ``record_previous=True``.

    Attributes:
        interface_id: The interface.
    """

    def __init__(self, interface_id: str) -> None:
        self.interface_id = interface_id
        super().__init__(
            f"interface {interface_id}: no previous profile was recorded, so it cannot be reverted"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id,))


class JournalInUseError(KatapultError):
    """Another bulk run holds the journal: one journal serves one run at a time.

    Raised when a bulk run starts, before anything is sent, if another run (in this process or
    another) holds the journal file's exclusive advisory lock.

    Attributes:
        path: The journal file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"journal {path} is in use by another bulk run; wait for it to end or use another "
            "journal"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path,))


class NothingToResumeError(KatapultError, ValueError):
    """A bulk run was asked to resume (``resume=True``), but its journal holds no unfinished run.

    Raised when the run starts, before anything is sent: the journal's last run finished (every
    item got its result), or the journal is missing or empty. Without ``resume=True`` such a run
    starts a new run instead.

    Attributes:
        path: The journal file.
        finished: True when the journal's last run finished; False when it records no run.
    """

    def __init__(self, path: str, *, finished: bool) -> None:
        self.path = path
        self.finished = finished
        why = "its last run finished" if finished else "it records no run"
        super().__init__(
            f"journal {path}: {why}, so there is nothing to resume; "
            "run without resume to start a new run"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_nothing_to_resume, (self.path, self.finished))


def _rebuild_nothing_to_resume(path: str, finished: bool) -> NothingToResumeError:
    return NothingToResumeError(path, finished=finished)


class RunHaltedError(KatapultError):
    """A bulk run halted: the error of every item it skipped (``Outcome.SKIPPED``).

    A halted run starts no new update; the items already in flight end (their tasks are awaited);
    every item not yet started gets exactly one ``SKIPPED`` result whose ``error`` is this error.
    The journal records the run as ``halted``, so a rerun resumes it, and the run's last
    :class:`~katapult_async.models.BulkProgress` carries it as ``halted``. Subclasses say why.

    Attributes:
        reason: Why the run halted, in one line.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the run halted: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class RunAbortedError(RunHaltedError):
    """A bulk run stopped at an error that no other item could escape.

    That is a missing or invalid API token, a token not allowed from this address or without the
    scope, or an API that cannot be reached once the client's retries are spent: every further
    request would fail the same way. The run halts at once (see :class:`RunHaltedError`); fix the
    cause and rerun with the same journal to resume.

    Attributes:
        cause: The error that stopped the run (also its ``__cause__``).
        reason: The cause's message.
    """

    def __init__(self, cause: KatapultError) -> None:
        self.cause = cause
        super().__init__(" ".join(str(cause).split()) or type(cause).__name__)
        self.__cause__ = cause

    def __str__(self) -> str:
        return f"the run stopped: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cause,))


class RolloutHaltedError(RunHaltedError):
    """A rollout halted (its canary, or its failure threshold): the error of every item it did
    not start (``SKIPPED``, nothing sent).

    Rerunning with the same journal resumes the run: the skipped items are sent then.

    Attributes:
        reason: Why the run halted, in a sentence (``"canary item vmnet_... failed"``, ...).
        failures: The failures counted when it halted.
        finished: The items finished (this run's, through the rollout) when it halted.
    """

    def __init__(self, reason: str, *, failures: int, finished: int) -> None:
        self.failures = failures
        self.finished = finished
        super().__init__(reason)

    def __str__(self) -> str:
        return (
            f"rollout halted: {self.reason} ({self.failures} failed of {self.finished} "
            "finished); not started (rerun with the same journal to resume)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_halted, (type(self), self.reason, self.failures, self.finished))


def _rebuild_halted(
    cls: type[RolloutHaltedError], reason: str, failures: int, finished: int
) -> RolloutHaltedError:
    return cls(reason, failures=failures, finished=finished)
