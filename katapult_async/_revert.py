"""Reverting a journaled bulk run: every interface it changed, back to its previous profile.

:func:`revert_speed_profiles` reads the run's journal (:func:`read_changes`: each interface whose
latest result is ``completed``, with the profile set and the one before), checks each interface's
current profile with a plan (:mod:`katapult_async._plan`: one paced GET each), and sends the
reverts as a bulk run of its own (:func:`~katapult_async.bulk.bulk_update`), journaled so that a
rerun after a crash resumes it. One :class:`~katapult_async.models.UpdateResult` per change:

* back on its previous profile already: ``ALREADY_ASSIGNED``, nothing sent;
* on the profile the run set: reverted (``COMPLETED``, ``FAILED``, ``ERROR`` as any update);
* on another profile (changed since by someone else): ``SKIPPED`` with a
  :class:`~katapult_async.errors.DriftedError`, unless ``force``;
* no previous profile recorded: ``SKIPPED`` with a
  :class:`~katapult_async.errors.NoPreviousProfileError`;
* cannot be read: ``ERROR`` with the reason.
"""

from __future__ import annotations

import array
import contextlib
import os
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

import attrs

from katapult_async import _telemetry
from katapult_async._plan import PlanAction, plan_speed_profiles, profile_matches, profile_text
from katapult_async.bulk import bulk_update
from katapult_async.bulk._journal import close_run, loads, loads_run, previous_run
from katapult_async.errors import DriftedError, NoPreviousProfileError
from katapult_async.models import Outcome, SpeedProfileRef, UpdateItem, UpdateResult

if TYPE_CHECKING:
    from katapult_async._callbacks import ProgressCallback
    from katapult_async.bulk import SupportsBulkUpdate
    from katapult_async.models import BulkProgress

__all__ = [
    "REVERTED",
    "JournaledChange",
    "read_changes",
    "revert_journal_path",
    "revert_pending",
    "revert_speed_profiles",
]

REVERTED = "reverted: a rerun starts a new run"
"""The reason of the ``finished`` line with which a revert closes the run it reverts."""


@attrs.frozen
class JournaledChange:
    """One change a journaled run made: the interface, the profile it set, the one before.

    Attributes:
        interface_id: The interface.
        speed_profile: The profile the run set, as journaled (id or permalink).
        previous: The profile before, as journaled; ``None`` when the run did not record it.
    """

    interface_id: str
    speed_profile: str
    previous: str | None


def read_changes(
    journal: str | os.PathLike[str], *, last_run: bool = False
) -> list[JournaledChange]:
    """The changes a journaled run completed, one per interface (its latest result decides).

    Args:
        journal: The journal.
        last_run: Only the journal's last run (from its last ``started`` line that does not
            resume the run before it); by default every run the journal holds.

    Raises:
        OSError: the journal cannot be read.
    """
    latest: dict[str, JournaledChange | None] = {}
    with open(journal, "rb") as f:
        for line in f:
            record = loads(line)
            if record is None:
                boundary = loads_run(line) if last_run else None
                if boundary is not None and boundary.status == "started" and not boundary.resumed:
                    latest.clear()
                continue
            if record.event != "result":
                continue
            if record.outcome is Outcome.COMPLETED:
                latest[record.interface_id] = JournaledChange(
                    record.interface_id, record.speed_profile, record.previous_speed_profile
                )
            else:
                latest[record.interface_id] = None
    return [change for change in latest.values() if change is not None]


def revert_journal_path(journal: str | os.PathLike[str]) -> str:
    """The default journal of a revert: the run's journal name plus ``.undo.jsonl``."""
    return f"{os.fspath(journal)}.undo.jsonl"


def revert_pending(
    journal: str | os.PathLike[str], revert_journal: str | os.PathLike[str] | None = None
) -> bool:
    """Whether a revert of the journal's last run began and did not finish (a crash, Ctrl-C).

    That is: the journal's last run was closed by a revert (:data:`REVERTED`), and the revert's
    own journal (default :func:`revert_journal_path`) holds a run that did not finish. Reads
    both files without locking them.
    """
    last = None
    try:
        with open(journal, "rb") as f:
            for line in f:
                boundary = loads_run(line) if b'"run"' in line else None
                if boundary is not None:
                    last = boundary
    except FileNotFoundError:
        return False
    if last is None or last.status != "finished" or last.reason != REVERTED:
        return False
    own = revert_journal if revert_journal is not None else revert_journal_path(journal)
    return previous_run(own) not in ("none", "finished")


def revert_speed_profiles(
    client: SupportsBulkUpdate,
    journal: str | os.PathLike[str],
    *,
    force: bool = False,
    revert_journal: str | os.PathLike[str] | None = None,
    concurrency: int = 16,
    on_progress: ProgressCallback[BulkProgress] | None = None,
    task_timeout: float | None = None,
    journal_fsync: bool = False,
    last_run: bool = False,
) -> AsyncGenerator[UpdateResult, None]:
    """Put every interface a journaled run changed back on its previous profile.

    Yields one :class:`UpdateResult` per interface whose latest result in ``journal`` is
    ``completed`` (see the module documentation for the outcomes); ``index`` is its position
    among those changes, ``speed_profile`` the profile put back and ``previous_speed_profile``
    the one it had, so that the revert's own journal can be reverted in turn. Every request
    goes through the client's rate limiter. The reverts are journaled in ``revert_journal``: a
    rerun resumes them, and finds the interfaces reverted already in place.

    Args:
        client: A :class:`~katapult_async.client.KatapultClient`.
        journal: The journal of the run to revert.
        force: Revert an interface changed since the run too (default: ``SKIPPED``, with a
            :class:`~katapult_async.errors.DriftedError`).
        revert_journal: The revert's own journal (default: :func:`revert_journal_path`).
        concurrency: Interfaces checked, and reverts in progress, at once.
        on_progress: As for :func:`~katapult_async.bulk.bulk_update`, for the reverts sent.
        task_timeout: Seconds to wait for each revert's task.
        journal_fsync: As for :func:`~katapult_async.bulk.bulk_update`.
        last_run: Revert only the journal's last run (a run resumed after a halt or a crash
            included); by default every completed change the journal holds.

    The journal's last run, if it did not finish (it halted, or was interrupted), is closed as
    finished before any request: resuming it would take the items it completed as done, though
    they are reverted. A rerun of the original update then starts a new run.

    Raises:
        OSError: at once, when ``journal`` cannot be read.
        ValueError: at once, for invalid options.
        JournalInUseError: on the first iteration, when a run holds ``journal`` or the revert's.
    """
    changes = read_changes(journal, last_run=last_run)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    own_journal = revert_journal if revert_journal is not None else revert_journal_path(journal)
    decided: deque[UpdateResult] = deque()
    positions: array.array[int] = array.array("q")

    async def to_send() -> AsyncIterator[UpdateItem]:
        """The reverts to send; the other changes' results go to ``decided``."""
        checked = [(n, c) for n, c in enumerate(changes) if c.previous is not None]
        for n, change in enumerate(changes):
            if change.previous is None:
                error = NoPreviousProfileError(change.interface_id)
                decided.append(_result(n, change, Outcome.SKIPPED, error=error))
        targets = ((c.interface_id, c.previous) for _, c in checked if c.previous is not None)
        plan = plan_speed_profiles(client, targets, concurrency=concurrency)
        async with contextlib.aclosing(plan):
            async for item in plan:
                n, change = checked[item.index]
                assert change.previous is not None
                current = item.current_speed_profile
                if item.action is PlanAction.ERROR:
                    decided.append(_result(n, change, Outcome.ERROR, error=item.error))
                elif item.action is PlanAction.UNCHANGED:
                    decided.append(_result(n, change, Outcome.ALREADY_ASSIGNED))
                elif profile_matches(current, change.speed_profile) or force:
                    positions.append(n)
                    yield change.interface_id, change.previous, profile_text(current)
                else:
                    drift = DriftedError(
                        change.interface_id,
                        change.speed_profile,
                        profile_text(current),
                        change.previous,
                    )
                    decided.append(_result(n, change, Outcome.SKIPPED, error=drift))

    async def results() -> AsyncGenerator[UpdateResult, None]:
        # The run's items go back: resuming that run later would take them as done.
        close_run(journal, REVERTED)
        reverts = bulk_update(
            client,
            to_send(),
            concurrency=concurrency,
            on_progress=on_progress,
            journal=own_journal,
            task_timeout=task_timeout,
            journal_fsync=journal_fsync,
        )
        async with contextlib.aclosing(reverts):
            async for result in reverts:
                while decided:
                    yield decided.popleft()
                yield attrs.evolve(result, index=positions[result.index])
        while decided:
            yield decided.popleft()

    return _telemetry.traced_iteration(
        "katapult.revert_speed_profiles", results(), changes=len(changes), force=force
    )


def _result(
    index: int,
    change: JournaledChange,
    outcome: Outcome,
    *,
    error: BaseException | None = None,
) -> UpdateResult:
    """The result of a change that needed no revert request."""
    return UpdateResult(
        change.interface_id,
        _ref(change.previous),
        outcome,
        error=error,
        index=index,
        previous_speed_profile=_ref(change.speed_profile),
    )


def _ref(text: str | None) -> SpeedProfileRef | None:
    """A journaled profile as a ref (``None`` for none, or for text that is not a profile)."""
    if text is None:
        return None
    try:
        return SpeedProfileRef.parse(text)
    except (TypeError, ValueError):
        return None
