"""The bulk journal: the record of one JSON line, its text form, and the append-only file.

:class:`JournalRecord` is one line; :func:`dumps` and :func:`loads` turn it into text and back
through the package's one converter (:mod:`katapult_async._convert`). ``_Journal`` is the file a
run appends to and resumes from; the format and the resume rules are documented in
:mod:`katapult_async.bulk`.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any, Literal, TypeAlias

import attrs
import cattrs

from katapult_async._convert import converter
from katapult_async.models import Outcome, UpdateResult

__all__ = ["JournalEvent", "JournalRecord", "dumps", "loads"]

JournalEvent: TypeAlias = Literal["submitted", "result"]
"""``submitted``: a PATCH was accepted (its task not yet finished); ``result``: an item finished."""

_RESULT_ONLY = ("outcome", "error", "error_type")
"""The keys of a ``result`` line that a ``submitted`` line does not have."""

_FINISHED = (Outcome.COMPLETED, Outcome.ALREADY_ASSIGNED)


@attrs.frozen(kw_only=True)
class JournalRecord:
    """One line of a bulk journal: what happened to one input item.

    A ``result`` record has an ``outcome``; a ``submitted`` one has none (nor an ``error``).

    Attributes:
        event: ``"submitted"`` when a PATCH was accepted, ``"result"`` when the item finished.
        index: The item's position in that run's input (``None`` when a line did not say).
        interface_id: The interface id as given.
        speed_profile: The requested profile (id or permalink) as given.
        outcome: How the item ended (``result`` records only).
        task_id: The id of the task the API accepted for the item, if any.
        error: The error's message, for ``ERROR`` and ``FAILED`` outcomes.
        error_type: The error's class name, with ``error``.
        at: Unix time of the record, to the millisecond.

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
            speed_profile=result.speed_profile,
            outcome=result.outcome,
            task_id=task_id,
            error=str(error) if error is not None else None,
            error_type=type(error).__name__ if error is not None else None,
            at=_now() if at is None else at,
        )


def dumps(record: JournalRecord) -> str:
    """One JSON line for ``record``, without the newline.

    The text is ASCII: anything else is escaped, so that even a malformed input string (a lone
    surrogate) can be written. A ``submitted`` line leaves out ``outcome``, ``error`` and
    ``error_type``.
    """
    data: dict[str, Any] = converter.unstructure(record)
    if record.event == "submitted":
        for key in _RESULT_ONLY:
            del data[key]
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
    if data.get("event") == "submitted":
        data = {key: value for key, value in data.items() if key not in _RESULT_ONLY}
    try:
        return converter.structure(data, JournalRecord)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError):
        return None


def _now() -> float:
    return round(time.time(), 3)


@attrs.frozen(slots=True)
class _Resumable:
    """What the journal says about one interface: the profile asked for and how far it got."""

    speed_profile: str
    outcome: Outcome | None  # COMPLETED/ALREADY_ASSIGNED when done, None when only accepted
    task_id: str | None


class _Journal:
    """The append-only journal file: reads the resume state, then writes and flushes lines.

    Attributes:
        path: The file.
        resumable: The resume state read when opened: interface id -> what the journal knows.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.resumable: dict[str, _Resumable] = {}
        needs_newline = self._load()
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed by close()
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
        with file:
            for line in file:
                last = line
                record = loads(line)
                if record is None:
                    continue
                interface_id, outcome, task_id = record.interface_id, record.outcome, record.task_id
                profile = profiles.setdefault(record.speed_profile, record.speed_profile)
                if record.event == "submitted" or outcome is Outcome.SUBMITTED:
                    if task_id is not None:
                        entries[interface_id] = _Resumable(profile, None, task_id)
                elif outcome in _FINISHED:
                    entries[interface_id] = _Resumable(profile, outcome, task_id)
                elif outcome is Outcome.FAILED:
                    entries.pop(interface_id, None)
                elif outcome is Outcome.ERROR and task_id is not None:
                    # Accepted, end unknown (a task timeout, say): poll it next time.
                    entries[interface_id] = _Resumable(profile, None, task_id)
                # ERROR with no task: nothing was changed; it does not alter the state.
        return not last.endswith(b"\n")

    def submitted(self, index: int, interface_id: str, speed_profile: str, task_id: str) -> None:
        """Record that the PATCH of an item was accepted as task ``task_id``."""
        self._append(
            JournalRecord(
                event="submitted",
                index=index,
                interface_id=interface_id,
                speed_profile=speed_profile,
                task_id=task_id,
                at=_now(),
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

    def close(self) -> None:
        """Close the file."""
        self._file.close()
