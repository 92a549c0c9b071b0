"""The bulk journal: the record of one JSON line, its text form, and the append-only file.

:class:`JournalRecord` is one item's line; :func:`dumps` and :func:`loads` turn it into text and
back through the package's one converter (:mod:`katapult_async._convert`). :class:`RunRecord` is a
run boundary (a run ``started``; it ``finished``, ``halted`` or was ``interrupted``), written by
:func:`dumps_run` and read by :func:`loads_run`; :func:`previous_run` tells, without locking, how
the last run a journal records ended. ``_Journal`` is the file a run appends to and resumes from,
holding an exclusive advisory lock on it for the run's lifetime (``fcntl.flock`` on POSIX,
``msvcrt.locking`` on Windows); the format and the resume rules are documented in
:mod:`katapult_async.bulk`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import deque
from datetime import datetime
from typing import IO, Any, Literal, TypeAlias

import attrs
import cattrs

from katapult_async._convert import converter
from katapult_async.errors import JournalInUseError, NothingToResumeError
from katapult_async.models import Outcome, SpeedProfileRef, Task, UpdateResult

__all__ = [
    "JournalEvent",
    "JournalRecord",
    "PreviousRun",
    "RunRecord",
    "RunStatus",
    "close_run",
    "dumps",
    "dumps_run",
    "loads",
    "loads_run",
    "previous_run",
]

JournalEvent: TypeAlias = Literal["attempt", "submitted", "result"]
"""``attempt``: a PATCH is about to be sent; ``submitted``: a PATCH was accepted (its task not yet
finished); ``result``: an item finished."""

RunStatus: TypeAlias = Literal["started", "finished", "halted", "interrupted"]
"""A run boundary: ``started`` opens a run; ``finished`` (every item got its result), ``halted``
(the run stopped itself, see :class:`~katapult_async.errors.RunHaltedError`) and ``interrupted``
(cancelled, closed early, or its input or progress callback failed) close it."""

PreviousRun: TypeAlias = Literal["none", "finished", "halted", "interrupted", "unfinished"]
"""How the last run a journal records ended: ``none`` (no journal, or no line in it), one of the
closing :data:`RunStatus` values, or ``unfinished`` (no closing line: the process was killed, or
the journal was written before run boundaries existed). Every value but ``none`` and ``finished``
is a run a rerun resumes."""

_RESULT_ONLY = ("outcome", "error", "error_type", "confirmed_after_lost_response", "verified")
"""The keys of a ``result`` line that the other lines do not have."""

_OPTIONAL = ("task", "previous_speed_profile")
"""Keys left out of a line when they hold ``None`` (journals written before them stay readable)."""

FSYNC_INTERVAL = 0.1
"""With ``journal_fsync=True``, the longest time (seconds) a written line waits for its fsync."""

_FINISHED = (Outcome.COMPLETED, Outcome.ALREADY_ASSIGNED)
_ENDED_TASK = (Outcome.COMPLETED, Outcome.FAILED)

DURATION_SAMPLES = 64
"""Durations of recorded tasks kept when a journal is read (the latest ones)."""


@attrs.frozen(kw_only=True)
class JournalRecord:
    """One line of a bulk journal: what happened to one input item.

    A ``result`` record has an ``outcome``; the others have none (nor an ``error``).

    Attributes:
        event: ``"attempt"`` just before a PATCH is sent, ``"submitted"`` when a PATCH was
            accepted, ``"result"`` when the item finished.
        index: The item's position in that run's input (``None`` when a line did not say).
        interface_id: The interface id as given.
        speed_profile: The requested profile (id or permalink) as given.
        outcome: How the item ended (``result`` records only).
        task_id: The id of the task the API accepted for the item, if any.
        error: The error's message, for ``ERROR`` and ``FAILED`` outcomes.
        error_type: The error's class name, with ``error``.
        at: Unix time of the record, to the millisecond.
        task: The task as last seen (``submitted`` and ``result`` records), whole.
        previous_speed_profile: The profile the interface had before, when known (id or
            permalink).
        confirmed_after_lost_response: The result was confirmed after a lost response (see
            :attr:`~katapult_async.models.UpdateResult.confirmed_after_lost_response`).
        verified: A rollout read the interface back and found the profile (see
            :attr:`~katapult_async.models.UpdateResult.verified`).

    Raises:
        ValueError: for a ``result`` without an outcome or a ``submitted`` with one.
    """

    event: JournalEvent
    index: int | None = None
    interface_id: str
    speed_profile: str
    outcome: Outcome | None = None
    task_id: str | None = None
    error: str | None = None
    error_type: str | None = None
    at: float | None = None
    task: Task | None = None
    previous_speed_profile: str | None = None
    confirmed_after_lost_response: bool = False
    verified: bool = False

    def __attrs_post_init__(self) -> None:
        if (self.event == "result") != (self.outcome is not None):
            raise ValueError(f"a {self.event} record with outcome {self.outcome!r}")

    @classmethod
    def from_result(
        cls, result: UpdateResult, task_id: str | None = None, *, at: float | None = None
    ) -> JournalRecord:
        """The ``result`` record of one item.

        Args:
            result: The item's result.
            task_id: The id of the task the API accepted for the item; defaults to
                ``result.task.id`` (give it when the result carries no task, as after a resumed
                task could not be read).
            at: Unix time of the record; defaults to now.
        """
        error = result.error
        if task_id is None and result.task is not None:
            task_id = result.task.id
        return cls(
            event="result",
            index=result.index,
            interface_id=result.interface_id,
            speed_profile=_profile_text(result.speed_profile),
            outcome=result.outcome,
            task_id=task_id,
            error=str(error) if error is not None else None,
            error_type=type(error).__name__ if error is not None else None,
            at=_now() if at is None else at,
            task=result.task,
            previous_speed_profile=(
                None
                if result.previous_speed_profile is None
                else str(result.previous_speed_profile)
            ),
            confirmed_after_lost_response=result.confirmed_after_lost_response,
            verified=result.verified,
        )


@attrs.frozen(kw_only=True)
class RunRecord:
    """A run boundary line of a bulk journal: ``{"event": "run", "status": ...}``.

    Every run opens with a ``started`` line and, unless the process dies, closes with one more
    line: ``finished``, ``halted`` (with its ``reason``) or ``interrupted``. A rerun resumes a run
    that did not finish, and starts a new run after one that did.

    Attributes:
        status: What the line marks (see :data:`RunStatus`).
        run: The run's number in the journal, from 1.
        at: Unix time of the line, to the millisecond.
        resumed: On ``started`` lines: whether the run resumes the unfinished run before it.
        reason: On ``halted`` lines: why the run halted.
    """

    status: RunStatus
    run: int | None = None
    at: float | None = None
    resumed: bool | None = None
    reason: str | None = None


def dumps_run(record: RunRecord) -> str:
    """One JSON line for a run boundary, without the newline; ``None`` values are left out."""
    data: dict[str, Any] = {"event": "run"}
    for key, value in converter.unstructure(record).items():
        if value is not None:
            data[key] = value
    return json.dumps(data)


def loads_run(line: str | bytes) -> RunRecord | None:
    """The run boundary of one journal line, or ``None`` for any other line. Never raises."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.pop("event", None) != "run":
        return None
    # A flag, read apart from the converter, whose strict int hook refuses bools.
    resumed = data.pop("resumed", None)
    try:
        record = converter.structure(data, RunRecord)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError):
        return None
    return attrs.evolve(record, resumed=resumed) if isinstance(resumed, bool) else record


@attrs.define
class _RunLog:
    """What the run boundaries of a journal say so far, fed its lines in order."""

    runs: int = 0
    last: RunStatus | None = None
    items_after: bool = False  # item lines after the last boundary
    any_line: bool = False

    def run_line(self, record: RunRecord) -> bool:
        """Take a boundary; return whether it opens a run after a finished one."""
        self.any_line = True
        after_finished = self.finished
        if record.status == "started":
            self.runs += 1
        self.last, self.items_after = record.status, False
        return record.status == "started" and after_finished

    def item_line(self) -> None:
        self.any_line = self.items_after = True

    @property
    def finished(self) -> bool:
        # Item lines after a ``finished`` line were appended by a version without boundaries.
        return self.last == "finished" and not self.items_after

    @property
    def previous(self) -> PreviousRun:
        if not self.any_line:
            return "none"
        if self.last in ("finished", "halted", "interrupted") and not self.items_after:
            return self.last
        return "unfinished"


def _is_run_line(line: bytes) -> bool:
    return b'"run"' in line


def previous_run(path: str | os.PathLike[str]) -> PreviousRun:
    """How the last run recorded in the journal at ``path`` ended (``none`` if there is none).

    Reads the file without taking its lock, so a run in progress elsewhere reads as
    ``unfinished``.
    """
    log = _RunLog()
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return "none"
    with file:
        for line in file:
            if not line.strip():
                continue
            record = loads_run(line) if _is_run_line(line) else None
            if record is not None:
                log.run_line(record)
            elif loads(line) is not None:
                log.item_line()
    return log.previous


def _profile_text(profile: SpeedProfileRef | str | None) -> str:
    """The journal's text of a requested profile: the id or permalink (``""`` for none)."""
    return "" if profile is None else str(profile)


def _task_data(task: Task) -> dict[str, Any]:
    """A task as JSON, its times as unix seconds with their fractions (the API's shape)."""

    def unix(value: datetime | None) -> float | None:
        return None if value is None else value.timestamp()

    return {
        "id": task.id,
        "name": task.name,
        "status": task.status.value,
        "created_at": unix(task.created_at),
        "started_at": unix(task.started_at),
        "finished_at": unix(task.finished_at),
        "progress": task.progress,
    }


def dumps(record: JournalRecord) -> str:
    """One JSON line for ``record``, without the newline.

    The text is ASCII: anything else is escaped, so that even a malformed input string (a lone
    surrogate) can be written. ``attempt`` and ``submitted`` lines leave out ``outcome``, ``error``,
    ``error_type``, ``confirmed_after_lost_response`` and ``verified``; a result line leaves out
    ``confirmed_after_lost_response`` and ``verified`` when false; any line leaves out ``task``
    and ``previous_speed_profile`` when they are ``None``.
    """
    data: dict[str, Any] = converter.unstructure(record)
    if record.event != "result":
        for key in _RESULT_ONLY:
            del data[key]
    else:
        for flag in ("confirmed_after_lost_response", "verified"):
            if not data[flag]:
                del data[flag]
    for key in _OPTIONAL:
        if data[key] is None:
            del data[key]
    if record.task is not None:
        data["task"] = _task_data(record.task)
    return json.dumps(data)


def loads(line: str | bytes) -> JournalRecord | None:
    """The record of one journal line, or ``None`` for a line that holds none.

    That is a line that is not a JSON object (a line cut short by ``kill -9``, say), names an
    unknown event or outcome, lacks ``event``, ``interface_id`` or ``speed_profile``, or has a
    value of the wrong type. Unknown keys are ignored, and so are the result keys of a ``submitted``
    line. Never raises.
    """
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("event") in ("submitted", "attempt"):
        data = {key: value for key, value in data.items() if key not in _RESULT_ONLY}
    # Flags, not ints: read apart from the converter, whose strict int hook refuses bools.
    confirmed = data.pop("confirmed_after_lost_response", False) is True
    verified = data.pop("verified", False) is True
    try:
        record = converter.structure(data, JournalRecord)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError):
        return None
    if confirmed or verified:
        record = attrs.evolve(record, confirmed_after_lost_response=confirmed, verified=verified)
    return record


def _now() -> float:
    return round(time.time(), 3)


@attrs.frozen(slots=True)
class _Resumable:
    """What the journal says about one interface: the profile asked for and how far it got.

    ``outcome`` is COMPLETED/ALREADY_ASSIGNED when done, else None: then ``task_id`` is the
    accepted task to follow, or, when None, ``attempted`` says a PATCH was sent whose answer was
    never recorded (it may have been applied).
    """

    speed_profile: str
    outcome: Outcome | None
    task_id: str | None
    task: Task | None = None
    previous_speed_profile: str | None = None
    attempted: bool = False
    confirmed: bool = False


def close_run(path: str | os.PathLike[str], reason: str) -> bool:
    """Close the journal's last run as ``finished`` (with ``reason``) if it did not finish.

    For a run that was reverted: resuming it would take the items it completed as done, though
    they are back on their previous profiles; after this line a rerun starts a new run. Takes the
    journal's lock for the one line.

    Returns:
        Whether a line was written (the last run had not finished).

    Raises:
        JournalInUseError: another run holds the journal.
    """
    if previous_run(path) in ("none", "finished"):
        return False
    journal = _Journal(os.fspath(path))
    try:
        last = journal._runs.runs or None
        journal._write_run(RunRecord(status="finished", run=last, at=_now(), reason=reason))
    finally:
        journal.close()
    return True


class _Journal:
    """The append-only journal file: locks it, reads the resume state, then writes lines.

    Every line is flushed to the operating system as it is written. With ``fsync=True`` the file
    is also ``fsync``-ed at most :data:`FSYNC_INTERVAL` after any line (at once if the last fsync
    is that old, else by a timer on the running loop) and on close, so that a power loss loses at
    most that much.

    A run calls :meth:`begin` first, which writes its ``started`` line (and forgets the resume
    state when it starts a new run rather than resuming), and :meth:`end` last.

    Attributes:
        path: The file.
        resumable: The resume state read when opened: interface id -> what the journal knows
            of the unfinished run (empty when the last run finished).
        durations: For the latest tasks the journal saw end (completed or failed), the seconds
            from their ``submitted`` line to their ``result`` line (as long as the run took to
            see them done), at most :data:`DURATION_SAMPLES`, from every run it records.
        previous: How the last run the file records ended.

    Raises:
        JournalInUseError: another run (of any process) holds the file's lock.
        OSError: the file cannot be opened or read.
    """

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.path = path
        self.resumable: dict[str, _Resumable] = {}
        self.durations: deque[float] = deque(maxlen=DURATION_SAMPLES)
        self._runs = _RunLog()
        self._run = 0  # this run's number once begun
        self._ended = False
        self._fsync = fsync
        self._dirty = False
        self._synced = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed by close()
        try:
            if not _try_lock(self._file):
                raise JournalInUseError(path)
            needs_newline = self._load()
        except BaseException:
            self._file.close()
            raise
        if needs_newline:
            # A line cut short by a crash: end it so that our first line parses.
            self._write(b"\n")

    def _load(self) -> bool:
        """Read the resume state; return whether the file ends without a newline."""
        try:
            file = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return False
        entries = self.resumable
        profiles: dict[str, str] = {}  # shares the few distinct profile strings between entries
        last = b"\n"
        runs = self._runs
        submitted_at: dict[str, tuple[str | None, float | None]] = {}  # id -> (task id, at)
        with file:
            for line in file:
                last = line
                if _is_run_line(line) and (boundary := loads_run(line)) is not None:
                    if runs.run_line(boundary):
                        entries.clear()  # a new run after a finished one: that state is done
                    continue
                record = loads(line)
                if record is None:
                    continue
                runs.item_line()
                interface_id, outcome, task_id = record.interface_id, record.outcome, record.task_id
                profile = profiles.setdefault(record.speed_profile, record.speed_profile)
                previous = record.previous_speed_profile
                if record.event == "submitted":
                    submitted_at[interface_id] = (task_id, record.at)
                elif outcome in _ENDED_TASK:
                    task_at = submitted_at.pop(interface_id, None)
                    if task_at is not None and task_at[0] == task_id:
                        self._saw_duration(task_at[1], record.at)
                if record.event == "attempt":
                    # A PATCH sent; until its answer is recorded it may have been applied.
                    entries[interface_id] = _Resumable(
                        profile, None, None, previous_speed_profile=previous, attempted=True
                    )
                elif record.event == "submitted" or outcome is Outcome.SUBMITTED:
                    if task_id is not None:
                        entries[interface_id] = _Resumable(
                            profile, None, task_id, record.task, previous
                        )
                elif outcome in _FINISHED:
                    entries[interface_id] = _Resumable(
                        profile,
                        outcome,
                        task_id,
                        record.task,
                        previous,
                        confirmed=record.confirmed_after_lost_response,
                    )
                elif outcome is Outcome.FAILED or record.error_type == "VerificationError":
                    # Failed, or read back with another profile: the change did not hold.
                    entries.pop(interface_id, None)
                elif outcome is Outcome.ERROR and task_id is not None:
                    # Accepted, end unknown (a task timeout, say): poll it next time.
                    entries[interface_id] = _Resumable(
                        profile, None, task_id, record.task, previous
                    )
                # ERROR with no task: nothing was changed (or, after an attempt, an answer that
                # may hide a change, which the attempt entry keeps); it does not alter the state.
                # SKIPPED: nothing was sent; the item keeps whatever state it had.
        if runs.finished:
            entries.clear()
        return not last.endswith(b"\n")

    def _saw_duration(self, submitted: float | None, ended: float | None) -> None:
        if submitted is not None and ended is not None and ended > submitted:
            self.durations.append(ended - submitted)

    @property
    def previous(self) -> PreviousRun:
        """How the last run recorded before this one ended."""
        return self._runs.previous

    def begin(self, resume: bool | None = None) -> bool:
        """Open this run with its ``started`` line; return whether it resumes the previous run.

        Args:
            resume: ``None``: resume the previous run unless it finished (or there is none);
                ``True``: resume it, and raise if it finished or there is none; ``False``: start
                a new run whatever the journal holds.

        Raises:
            NothingToResumeError: ``resume=True`` and the journal holds no unfinished run.
        """
        previous = self.previous
        if resume is True and previous in ("none", "finished"):
            raise NothingToResumeError(self.path, finished=previous == "finished")
        resuming = resume is not False and previous not in ("none", "finished")
        if not resuming:
            self.resumable.clear()
        self._run = self._runs.runs + 1
        self._write_run(RunRecord(status="started", run=self._run, at=_now(), resumed=resuming))
        return resuming

    def end(self, status: RunStatus, reason: str | None = None) -> None:
        """Close this run with its last line (``finished``, ``halted`` or ``interrupted``)."""
        if self._run == 0 or self._ended:
            return
        self._ended = True
        self._write_run(RunRecord(status=status, run=self._run, at=_now(), reason=reason))

    def _write_run(self, record: RunRecord) -> None:
        self._write(dumps_run(record).encode("ascii") + b"\n")

    def attempt(
        self,
        index: int,
        interface_id: str,
        speed_profile: str,
        previous_speed_profile: str | None = None,
    ) -> None:
        """Record that the PATCH of an item is about to be sent."""
        self._append(
            JournalRecord(
                event="attempt",
                index=index,
                interface_id=interface_id,
                speed_profile=speed_profile,
                at=_now(),
                previous_speed_profile=previous_speed_profile,
            )
        )

    def submitted(
        self,
        index: int,
        interface_id: str,
        speed_profile: str,
        task: Task | str,
        previous_speed_profile: str | None = None,
    ) -> None:
        """Record that the PATCH of an item was accepted as ``task`` (or a bare task id)."""
        whole = task if isinstance(task, Task) else None
        self._append(
            JournalRecord(
                event="submitted",
                index=index,
                interface_id=interface_id,
                speed_profile=speed_profile,
                task_id=task.id if isinstance(task, Task) else task,
                at=_now(),
                task=whole,
                previous_speed_profile=previous_speed_profile,
            )
        )

    def result(self, result: UpdateResult, task_id: str | None) -> None:
        """Record how an item ended (``task_id``: see :meth:`JournalRecord.from_result`)."""
        self._append(JournalRecord.from_result(result, task_id))

    def _append(self, record: JournalRecord) -> None:
        self._write(dumps(record).encode("ascii") + b"\n")

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        if self._fsync:
            self._dirty = True
            wait = FSYNC_INTERVAL - (time.monotonic() - self._synced)
            if wait <= 0:
                self._sync()
            elif self._timer is None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # written outside a loop: nothing could run the timer
                    self._sync()
                else:
                    self._timer = loop.call_later(wait, self._sync)

    def _sync(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._dirty and not self._file.closed:
            os.fsync(self._file.fileno())
            self._dirty = False
        self._synced = time.monotonic()

    def close(self) -> None:
        """Fsync (with ``fsync=True``), release the lock and close the file. Safe to call twice."""
        if self._file.closed:
            return
        try:
            if self._fsync:
                self._sync()
        finally:
            self._file.close()  # closing the descriptor releases the lock


def _try_lock(file: IO[bytes]) -> bool:
    """Take an exclusive advisory lock on ``file`` without waiting; False if another holds it.

    POSIX: ``flock`` (per open file: a second open of the same path, even in this process,
    conflicts). Windows: ``msvcrt.locking`` of the first byte. The lock goes with the descriptor.
    """
    if sys.platform == "win32":  # pragma: no cover - not run on the CI's Linux
        import msvcrt

        position = file.tell()
        try:
            file.seek(0)
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            file.seek(position)
        return True
    import fcntl

    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
