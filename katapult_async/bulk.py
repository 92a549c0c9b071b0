"""The bulk engine: many speed-profile updates, exactly one :class:`UpdateResult` per input pair.

:func:`bulk_update` pulls ``(interface, speed_profile)`` pairs lazily from a sync or async iterable
and hands each to one of ``concurrency`` long-lived worker coroutines. A worker validates the pair,
skips duplicates, consults the journal, sends the PATCH, waits for the task and puts the result on a
small bounded queue that the caller drains by iterating. No task is created per item, and nothing
grows with the input except a compact index of the interface ids seen (16 bytes a slot).

Journal (``journal=path``): a JSON Lines file, appended to and flushed after every line::

    {"event": "submitted", "index": 3, "interface_id": "vmnet_...", "speed_profile": "1gbps",
     "task_id": "task_...", "at": 1700000000.123}
    {"event": "result", "index": 3, "interface_id": "vmnet_...", "speed_profile": "1gbps",
     "outcome": "completed", "task_id": "task_...", "error": null, "error_type": null,
     "at": 1700000002.456}

A ``submitted`` line is written the moment a PATCH is accepted (before waiting for the task); a
``result`` line when an item finishes (with ``wait=False`` only the ``result`` line, whose outcome is
``submitted``, since it carries the same task id). ``index`` is the position in that run's input;
``speed_profile`` is the requested id or permalink as given. The API token never reaches this module.

On a rerun with the same journal, the latest relevant line for each interface decides, when it is for
the same requested profile:

* ``completed`` / ``already_assigned``: the item is not sent again; its result carries the recorded
  outcome and ``resumed=True``.
* a PATCH was accepted but the end is unknown (a ``submitted`` line, outcome ``submitted``, or an
  ``error`` with a task id such as a task timeout): with ``wait=True`` the task is read and, if it
  has not finished, polled, but not re-PATCHed (if the API no longer knows the task, the PATCH is
  sent again); with ``wait=False`` the item is reported ``submitted`` again without a request.
  These results are marked ``resumed=True`` too.
* anything else (``failed``, errors before a PATCH was accepted, a different profile, no line): the
  item is sent as usual.

Lines that cannot be parsed, such as a last line cut short by ``kill -9``, are ignored.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import time
import types
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from typing import IO, Any, Protocol, TypeAlias

import attrs

from katapult_async._callbacks import ProgressCallback, call_callback
from katapult_async.errors import (
    KatapultError,
    SpeedProfileAlreadyAssignedError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
)
from katapult_async.models import (
    NetworkInterfaceRef,
    Outcome,
    SpeedProfileRef,
    Task,
    TaskStatus,
    UpdateResult,
)

__all__ = [
    "BulkProgress",
    "DuplicateItemError",
    "UnconfirmedUpdateError",
    "UpdateItem",
    "bulk_update",
]

UpdateItem: TypeAlias = tuple[str | NetworkInterfaceRef, str | SpeedProfileRef]
"""One input pair: an interface (id or ref) and the speed profile (id, permalink or ref) it gets."""

PROGRESS_INTERVAL = 0.1
"""Seconds between two ``on_progress`` calls at most (10 a second), plus one final call."""

_MAX_RESULT_BUFFER = 32
_FINISHED = (Outcome.COMPLETED, Outcome.ALREADY_ASSIGNED)


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
    """The update landed, but its response was lost, so whether it will hold is unknown.

    A PATCH whose response was lost (a dropped connection, a timeout) was retried and the API
    answered ``speed_profile_already_assigned``: the lost attempt evidently made the assignment,
    but the client never learnt the id of the task that carries it out, and a task that fails
    puts the interface's previous profile back. Reporting ``ALREADY_ASSIGNED`` could be untrue,
    so the item is an ``ERROR`` with this error (its ``__cause__`` is the API's answer). A rerun
    once the task has had time to finish sends the update again: the API then accepts it (the
    task failed) or answers ``already_assigned`` (the assignment held).

    Attributes:
        interface_id: The interface whose update is unconfirmed.
        speed_profile: The profile asked for, as given.
    """

    def __init__(self, interface_id: str, speed_profile: str) -> None:
        self.interface_id = interface_id
        self.speed_profile = speed_profile
        super().__init__(
            f"interface {interface_id}: the update to {speed_profile} was applied but its "
            "response was lost, so its task could not be followed; rerun to confirm"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id, self.speed_profile))


@attrs.frozen(slots=True)
class BulkProgress:
    """A snapshot of a bulk run, passed to ``on_progress``.

    ``started == done + in_flight + (results waiting to be yielded)``, and the five outcome counts
    add up to ``done``.

    Attributes:
        total: The number of input pairs, when known (``total=`` or ``len(updates)``).
        done: Results handed to the caller so far.
        started: Pairs taken from the input so far.
        in_flight: Pairs taken and not yet finished (validating, PATCHing or waiting for a task).
        completed: Results with outcome ``COMPLETED``.
        already_assigned: Results with outcome ``ALREADY_ASSIGNED``.
        failed: Results with outcome ``FAILED``.
        errors: Results with outcome ``ERROR``.
        submitted: Results with outcome ``SUBMITTED``.
        resumed: Results that came from the journal (no PATCH sent in this run).
        requests_per_second: The recent request rate of the token: the requests the client's
            rate limiter counted in the last ``window`` seconds (PATCHes and polls, plus others'
            use of the token that the rate-limit headers revealed) over ``min(window, elapsed)``;
            ``None`` at the very start.
        rate_limited: 429 answers the client has seen.
        limit: The rate limit the client works to (requests per window), if known.
        elapsed: Seconds since the run started.
        eta: Estimated seconds to finish, when ``total`` is known and some work is done.
    """

    total: int | None
    done: int
    started: int
    in_flight: int
    completed: int
    already_assigned: int
    failed: int
    errors: int
    submitted: int
    resumed: int
    requests_per_second: float | None
    rate_limited: int
    limit: int | None
    elapsed: float
    eta: float | None

    @property
    def counts(self) -> Mapping[Outcome, int]:
        """The outcome counts as a read-only mapping."""
        return types.MappingProxyType(
            {
                Outcome.COMPLETED: self.completed,
                Outcome.ALREADY_ASSIGNED: self.already_assigned,
                Outcome.FAILED: self.failed,
                Outcome.ERROR: self.errors,
                Outcome.SUBMITTED: self.submitted,
            }
        )


# --- what the engine needs from a client -------------------------------------------------------


class _RateLimitSnapshot(Protocol):
    @property
    def limit(self) -> int | None: ...

    @property
    def window(self) -> float: ...

    @property
    def in_window(self) -> int: ...

    @property
    def rate_limited(self) -> int: ...


class _Poller(Protocol):
    async def wait(
        self, task: Task, /, *, timeout: float | None = ..., submitted_at: float | None = ...
    ) -> Task: ...


class SupportsBulkUpdate(Protocol):
    """The part of :class:`~katapult_async.client.KatapultClient` that :func:`bulk_update` uses."""

    async def update_speed_profile(
        self, interface: NetworkInterfaceRef, speed_profile: SpeedProfileRef, /
    ) -> Task: ...

    async def get_task(self, task_id: str, /) -> Task: ...

    async def wait_for_task(self, task: str, /, *, timeout: float | None = ...) -> Task: ...

    @property
    def poller(self) -> _Poller: ...

    @property
    def rate_limit(self) -> _RateLimitSnapshot: ...


# --- public entry point -------------------------------------------------------------------------


def bulk_update(
    client: SupportsBulkUpdate,
    updates: Iterable[UpdateItem] | AsyncIterable[UpdateItem],
    *,
    concurrency: int = 16,
    wait: bool = True,
    on_progress: ProgressCallback[BulkProgress] | None = None,
    journal: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    total: int | None = None,
) -> AsyncGenerator[UpdateResult, None]:
    """Update many interfaces concurrently; yield one :class:`UpdateResult` per input pair.

    Results come as items finish, not in input order (``index`` is the input position). Every pair
    gets exactly one result, and one item's failure never stops the others:

    * the task completed: ``COMPLETED`` (with the final task);
    * the API said the profile is already assigned: ``ALREADY_ASSIGNED``, unless that answer came
      to the retry of a PATCH whose response was lost: the lost attempt made the assignment and
      its unseen task may still fail and undo it, so the result is an ``ERROR`` with an
      :class:`UnconfirmedUpdateError` (a rerun confirms it);
    * the task failed: ``FAILED`` (``task`` and ``error`` say how);
    * ``wait=False`` and the PATCH was accepted: ``SUBMITTED`` (with the pending task);
    * anything else: ``ERROR`` with ``error`` (and ``task`` if one was seen). That includes a pair
      that is not a 2-tuple/list or holds a malformed id or profile (nothing is sent), a task
      timeout, an API or transport error after the client's retries, and a repeated interface: each
      interface is sent once per run, a later pair for it gets a :class:`DuplicateItemError`.

    The input is consumed lazily: no more than ``concurrency`` pairs in progress plus a result
    buffer of ``min(concurrency, 32)`` are taken from it ahead of the results yielded, so a
    generator of any length runs in flat memory. ``concurrency`` bounds the items in progress
    (PATCH and polls); the client's rate limiter paces the requests themselves.

    Stopping early: cancelling the task that iterates, calling ``aclose()``, or leaving an
    ``async with contextlib.aclosing(...)`` block stops taking input and sending PATCHes, cancels the
    waits in progress, closes the journal (which already holds a ``submitted`` line for every
    accepted PATCH, written the moment it was accepted, so a rerun polls those tasks) and leaves no
    task behind. Prefer ``aclosing`` over a bare
    ``break``, which leaves the clean-up to the garbage collector. A PATCH whose answer had not come
    when the run was stopped is not in the journal; a rerun sends it again and the API answers
    ``already_assigned`` if it had landed.

    Args:
        client: A :class:`~katapult_async.client.KatapultClient` (or any object with its
            ``update_speed_profile``, ``wait_for_task``, ``poller`` and ``rate_limit``).
        updates: A sync or async iterable of ``(interface, speed_profile)`` pairs, in the forms
            :meth:`~katapult_async.client.KatapultClient.update_speed_profile` accepts. An iterator
            passed in is left open; one this function creates (from an iterable) is closed.
        concurrency: How many items may be in progress at once (default 16).
        wait: Wait for each task to finish (default). ``False``: stop once the PATCH is accepted.
        on_progress: Called, sync or async, with a :class:`BulkProgress` after items finish, at
            most every :data:`PROGRESS_INTERVAL` seconds, and once more when the run ends normally.
            An exception it raises ends the run (after the clean-up described above).
        journal: A JSON Lines file to append progress to and to resume from (see the module
            documentation). Items already done in it are not sent again.
        timeout: Seconds to wait for each task before its result is an ``ERROR`` with a
            :class:`~katapult_async.errors.TaskTimeoutError`; ``None`` waits as long as it takes.
        total: The number of pairs, for ``BulkProgress.total`` and ``eta``; defaults to
            ``len(updates)`` when ``updates`` has a length.

    Returns:
        An async generator of results.

    Raises:
        ValueError, TypeError: at once, for invalid options or an ``updates`` that is not iterable.
        Exception: while iterating, an exception raised by the input iterator, after the items in
            progress have finished and been yielded; an ``OSError`` writing the journal, at once.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive or None, got {timeout!r}")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise ValueError(f"total must be a non-negative int or None, got {total!r}")
    sized_total: int | None = None
    if isinstance(updates, Sized):
        with contextlib.suppress(TypeError):
            sized_total = len(updates)
    if not isinstance(updates, (Iterable, AsyncIterable)):
        raise TypeError(
            f"updates must be an iterable or async iterable of pairs, not {type(updates).__name__}"
        )
    run = _BulkRun(
        client,
        updates,
        concurrency=concurrency,
        workers=max(1, min(concurrency, sized_total)) if sized_total is not None else concurrency,
        wait=wait,
        on_progress=on_progress,
        journal_path=os.fspath(journal) if journal is not None else None,
        timeout=timeout,
        total=total if total is not None else sized_total,
    )
    return run.results()


# --- internals -----------------------------------------------------------------------------------


class _SeenIndex:
    """Maps interface ids to the index of their first item, in two flat arrays.

    Keys are stored as their 64-bit ``hash()`` (open addressing, linear probing, load <= 1/2), so an
    entry costs 16-32 bytes instead of the ~140 of a ``dict[str, int]`` holding the strings. Two
    different ids colliding on all 64 bits (odds about n**2 / 2**65) would make the second a
    reported duplicate.
    """

    __slots__ = ("_hashes", "_indexes", "_mask", "_size")

    def __init__(self, capacity: int = 1024) -> None:
        self._hashes = array.array("q", bytes(8 * capacity))
        self._indexes = array.array("q", [-1]) * capacity
        self._mask = capacity - 1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def first_or_add(self, key: str, index: int) -> int | None:
        """Return the index stored for ``key``, or store ``index`` for it and return ``None``."""
        h = hash(key)
        hashes, indexes, mask = self._hashes, self._indexes, self._mask
        slot = h & mask
        while True:
            found = indexes[slot]
            if found < 0:
                hashes[slot] = h
                indexes[slot] = index
                self._size += 1
                if self._size * 2 > mask:
                    self._grow()
                return None
            if hashes[slot] == h:
                return found
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        old_hashes, old_indexes = self._hashes, self._indexes
        capacity = (self._mask + 1) * 2
        self._hashes = hashes = array.array("q", bytes(8 * capacity))
        self._indexes = indexes = array.array("q", [-1]) * capacity
        self._mask = mask = capacity - 1
        for h, index in zip(old_hashes, old_indexes, strict=True):
            if index < 0:
                continue
            slot = h & mask
            while indexes[slot] >= 0:
                slot = (slot + 1) & mask
            hashes[slot] = h
            indexes[slot] = index


@attrs.frozen(slots=True)
class _Resumable:
    """What the journal says about one interface: the profile asked for and how far it got."""

    speed_profile: str
    outcome: Outcome | None  # COMPLETED/ALREADY_ASSIGNED when done, None when only accepted
    task_id: str | None


class _Journal:
    """The append-only JSON Lines journal: reads the resume state, then writes and flushes lines."""

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
                record = _decode_line(line)
                if record is None:
                    continue
                event, interface_id, profile, outcome, task_id = record
                profile = profiles.setdefault(profile, profile)
                if event == "submitted" or outcome is Outcome.SUBMITTED:
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
        self._write_record(
            {
                "event": "submitted",
                "index": index,
                "interface_id": interface_id,
                "speed_profile": speed_profile,
                "task_id": task_id,
                "at": round(time.time(), 3),
            }
        )

    def result(self, result: UpdateResult, task_id: str | None) -> None:
        error = result.error
        self._write_record(
            {
                "event": "result",
                "index": result.index,
                "interface_id": result.interface_id,
                "speed_profile": result.speed_profile,
                "outcome": result.outcome.value,
                "task_id": task_id,
                "error": str(error) if error is not None else None,
                "error_type": type(error).__name__ if error is not None else None,
                "at": round(time.time(), 3),
            }
        )

    def _write_record(self, record: dict[str, Any]) -> None:
        # ASCII escapes: even a malformed input string (a lone surrogate) can be written.
        self._write(json.dumps(record).encode("ascii") + b"\n")

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _decode_line(line: bytes) -> tuple[str, str, str, Outcome | None, str | None] | None:
    """``(event, interface_id, speed_profile, outcome, task_id)`` of a journal line, or ``None``."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    event = data.get("event")
    interface_id = data.get("interface_id")
    profile = data.get("speed_profile")
    task_id = data.get("task_id")
    if not (isinstance(interface_id, str) and isinstance(profile, str)):
        return None
    if task_id is not None and not isinstance(task_id, str):
        return None
    if event == "submitted":
        return (event, interface_id, profile, None, task_id)
    if event == "result":
        try:
            outcome = Outcome(data.get("outcome"))
        except ValueError:
            return None
        return (event, interface_id, profile, outcome, task_id)
    return None


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _as_text(value: object) -> str:
    """The user's value as a string for a result (the id itself when it is one)."""
    if isinstance(value, str):
        return value
    if isinstance(value, NetworkInterfaceRef):
        return value.id
    if isinstance(value, SpeedProfileRef):
        return str(value)
    return _describe(value)


def _parse_pair(raw: object) -> tuple[NetworkInterfaceRef, SpeedProfileRef]:
    """Validate one input pair.

    Raises:
        TypeError, ValueError: with a message that names the part at fault.
    """
    if not isinstance(raw, (tuple, list)) or len(raw) != 2:
        raise TypeError(f"expected an (interface, speed_profile) pair, got {_describe(raw)}")
    interface, speed_profile = raw
    try:
        iface = NetworkInterfaceRef.parse(interface)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"invalid interface {_describe(interface)}: {exc}") from exc
    try:
        profile = SpeedProfileRef.parse(speed_profile)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"invalid speed profile {_describe(speed_profile)}: {exc}") from exc
    return iface, profile


def _result(
    interface_id: str,
    speed_profile: str,
    outcome: Outcome,
    index: int,
    *,
    task: Task | None = None,
    error: BaseException | None = None,
    resumed: bool = False,
) -> UpdateResult:
    return UpdateResult(
        interface_id, speed_profile, outcome, task=task, error=error, index=index, resumed=resumed
    )


class _Wake:
    """Put on the result queue to make the consumer look at the run's state again."""


_WAKE = _Wake()


class _BulkRun:
    """The state of one :func:`bulk_update` call: the input, the workers, counters, the journal."""

    def __init__(
        self,
        client: SupportsBulkUpdate,
        updates: Iterable[UpdateItem] | AsyncIterable[UpdateItem],
        *,
        concurrency: int,
        workers: int,
        wait: bool,
        on_progress: ProgressCallback[BulkProgress] | None,
        journal_path: str | None,
        timeout: float | None,
        total: int | None,
    ) -> None:
        self._client = client
        self._updates = updates
        self._workers = workers
        self._buffer = min(concurrency, _MAX_RESULT_BUFFER)
        self._wait = wait
        self._on_progress = on_progress
        self._journal_path = journal_path
        self._timeout = timeout
        self._total = total

        self._sync_iter: Iterator[object] | None = None
        self._async_iter: AsyncIterator[object] | None = None
        self._owns_iter = False
        self._pull_lock = asyncio.Lock()
        self._exhausted = False
        self._source_error: Exception | None = None
        self._fatal: BaseException | None = None

        self._seen = _SeenIndex()
        self._journal: _Journal | None = None
        self._resumable: dict[str, _Resumable] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._live = 0
        self._queue: asyncio.Queue[UpdateResult | _Wake] | None = None

        self._started = 0
        self._finished = 0
        self._done = 0
        self._counts = dict.fromkeys(Outcome, 0)
        self._resumed = 0
        self._skipped = 0  # resumed without any request: excluded from the ETA's rate
        self._t0 = 0.0
        self._last_report: float | None = None

    # --- the consumer side ----------------------------------------------------------------------

    async def results(self) -> AsyncGenerator[UpdateResult, None]:
        self._t0 = time.monotonic()
        try:
            self._open_input()
            if self._journal_path is not None:
                self._journal = _Journal(self._journal_path)
                self._resumable = self._journal.resumable
            queue = self._queue = asyncio.Queue(self._buffer)
            self._live = self._workers
            loop = asyncio.get_running_loop()
            for _ in range(self._workers):
                self._tasks.append(loop.create_task(self._work()))
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if self._live == 0 and queue.empty():
                    break
                item = await queue.get()
                if isinstance(item, _Wake):
                    continue
                self._count(item)
                await self._report(final=False)
                yield item
            if self._source_error is not None:
                raise self._source_error
            await self._report(final=True)
        finally:
            await self._shutdown()

    def _count(self, result: UpdateResult) -> None:
        self._done += 1
        self._counts[result.outcome] += 1

    async def _report(self, *, final: bool) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        if not final:
            if self._done == self._total:
                return  # the final call reports it
            last = self._last_report
            if last is not None and now - last < PROGRESS_INTERVAL:
                return
        self._last_report = now
        await call_callback(self._on_progress, self._snapshot(now))

    def _snapshot(self, now: float) -> BulkProgress:
        elapsed = now - self._t0
        limiter = self._client.rate_limit
        rps: float | None = None
        span = min(limiter.window, elapsed)
        if span > 0:
            rps = limiter.in_window / span
        eta: float | None = None
        if self._total is not None:
            remaining = max(0, self._total - self._done)
            worked = self._done - self._skipped
            if remaining == 0:
                eta = 0.0
            elif worked > 0:
                eta = remaining * elapsed / worked
        counts = self._counts
        return BulkProgress(
            total=self._total,
            done=self._done,
            started=self._started,
            in_flight=self._started - self._finished,
            completed=counts[Outcome.COMPLETED],
            already_assigned=counts[Outcome.ALREADY_ASSIGNED],
            failed=counts[Outcome.FAILED],
            errors=counts[Outcome.ERROR],
            submitted=counts[Outcome.SUBMITTED],
            resumed=self._resumed,
            requests_per_second=rps,
            rate_limited=limiter.rate_limited,
            limit=limiter.limit,
            elapsed=elapsed,
            eta=eta,
        )

    async def _shutdown(self) -> None:
        """Cancel and reap the workers, close the input iterator if ours, close the journal."""
        try:
            await _cancel_and_wait(self._tasks)
        finally:
            try:
                await self._close_input()
            finally:
                if self._journal is not None:
                    self._journal.close()

    # --- the input ------------------------------------------------------------------------------

    def _open_input(self) -> None:
        updates = self._updates
        if isinstance(updates, AsyncIterable):
            self._async_iter = aiter = updates.__aiter__()
            self._owns_iter = aiter is not updates
        else:
            self._sync_iter = it = iter(updates)
            self._owns_iter = it is not updates

    async def _close_input(self) -> None:
        if not self._owns_iter:
            return
        if self._async_iter is not None:
            aclose = getattr(self._async_iter, "aclose", None)
            if aclose is not None:
                await aclose()
        elif self._sync_iter is not None:
            close = getattr(self._sync_iter, "close", None)
            if close is not None:
                close()

    async def _pull(self) -> tuple[int, object] | None:
        """The next pair and its index, or ``None`` when the input is exhausted (or failed)."""
        if self._exhausted:
            return None
        if self._sync_iter is not None:
            try:
                raw = next(self._sync_iter)
            except StopIteration:
                self._exhausted = True
                return None
            except Exception as exc:
                self._input_failed(exc)
                return None
        else:
            assert self._async_iter is not None
            async with self._pull_lock:
                if self._exhausted:
                    return None
                try:
                    raw = await self._async_iter.__anext__()
                except StopAsyncIteration:
                    self._exhausted = True
                    return None
                except Exception as exc:
                    self._input_failed(exc)
                    return None
        index = self._started
        self._started = index + 1
        return index, raw

    def _input_failed(self, exc: Exception) -> None:
        # Raised to the caller once the items in progress have finished and been yielded.
        self._exhausted = True
        self._source_error = exc

    # --- the workers ----------------------------------------------------------------------------

    async def _work(self) -> None:
        queue = self._queue
        assert queue is not None
        try:
            while True:
                pulled = await self._pull()
                if pulled is None:
                    return
                result = await self._process(*pulled)
                self._finished += 1
                await queue.put(result)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the journal could not be written, a bug, a BaseException:
            if self._fatal is None:  # the consumer re-raises it in its own task, ending the run
                self._fatal = exc
            self._wake()
        finally:
            self._live -= 1
            if self._live == 0:
                self._wake()

    def _wake(self) -> None:
        assert self._queue is not None
        # A full queue means the consumer is not waiting: it re-checks the state before each get.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_WAKE)

    async def _process(self, index: int, raw: object) -> UpdateResult:
        try:
            iface, profile = _parse_pair(raw)
        except (TypeError, ValueError) as exc:
            pair = raw if isinstance(raw, (tuple, list)) and len(raw) == 2 else ("", "")
            return self._record(
                _result(_as_text(pair[0]), _as_text(pair[1]), Outcome.ERROR, index, error=exc)
            )
        interface_id = iface.id
        profile_text = str(profile)
        first = self._seen.first_or_add(interface_id, index)
        if first is not None:
            error = DuplicateItemError(interface_id, index, first)
            return self._record(
                _result(interface_id, profile_text, Outcome.ERROR, index, error=error)
            )
        if self._resumable:
            entry = self._resumable.pop(interface_id, None)
            if entry is not None and entry.speed_profile == profile_text:
                resumed = await self._resume(index, interface_id, entry)
                if resumed is not None:
                    return resumed
        return await self._update(index, iface, profile)

    async def _resume(
        self, index: int, interface_id: str, entry: _Resumable
    ) -> UpdateResult | None:
        """The result of an item the journal knows, or ``None`` to send it again."""
        profile_text, task_id = entry.speed_profile, entry.task_id
        if entry.outcome is not None or not self._wait:
            outcome = entry.outcome or Outcome.SUBMITTED
            task = None
            if task_id is not None:
                status = (
                    TaskStatus.COMPLETED if outcome is Outcome.COMPLETED else TaskStatus.PENDING
                )
                task = Task(id=task_id, status=status)
            self._resumed += 1
            self._skipped += 1
            return _result(interface_id, profile_text, outcome, index, task=task, resumed=True)
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
            self._resumed += 1
            return self._task_error(index, interface_id, profile_text, exc, seen, task_id, True)
        self._resumed += 1
        return self._record(
            _result(interface_id, profile_text, Outcome.COMPLETED, index, task=final, resumed=True),
            task_id,
        )

    async def _update(
        self, index: int, iface: NetworkInterfaceRef, profile: SpeedProfileRef
    ) -> UpdateResult:
        interface_id, profile_text = iface.id, str(profile)
        try:
            task = await self._client.update_speed_profile(iface, profile)
        except SpeedProfileAlreadyAssignedError as exc:
            if exc.after_lost_response:
                # Our own lost attempt made the assignment; its unseen task may yet fail.
                unconfirmed = UnconfirmedUpdateError(interface_id, profile_text)
                unconfirmed.__cause__ = exc
                return self._record(
                    _result(interface_id, profile_text, Outcome.ERROR, index, error=unconfirmed)
                )
            return self._record(
                _result(interface_id, profile_text, Outcome.ALREADY_ASSIGNED, index)
            )
        except Exception as exc:
            return self._record(
                _result(interface_id, profile_text, Outcome.ERROR, index, error=exc)
            )
        submitted_at = time.monotonic()
        if not self._wait:
            return self._record(
                _result(interface_id, profile_text, Outcome.SUBMITTED, index, task=task), task.id
            )
        if self._journal is not None:
            self._journal.submitted(index, interface_id, profile_text, task.id)
        try:
            final = await self._client.poller.wait(
                task, timeout=self._timeout, submitted_at=submitted_at
            )
        except Exception as exc:
            return self._task_error(index, interface_id, profile_text, exc, task, task.id, False)
        return self._record(
            _result(interface_id, profile_text, Outcome.COMPLETED, index, task=final), task.id
        )

    def _task_error(
        self,
        index: int,
        interface_id: str,
        profile_text: str,
        exc: Exception,
        task: Task | None,
        task_id: str,
        resumed: bool,
    ) -> UpdateResult:
        if isinstance(exc, TaskFailedError):
            result = _result(
                interface_id,
                profile_text,
                Outcome.FAILED,
                index,
                task=exc.task,
                error=exc,
                resumed=resumed,
            )
        else:
            if isinstance(exc, TaskTimeoutError) and exc.task is not None:
                task = exc.task
            result = _result(
                interface_id,
                profile_text,
                Outcome.ERROR,
                index,
                task=task,
                error=exc,
                resumed=resumed,
            )
        return self._record(result, task_id)

    def _record(self, result: UpdateResult, task_id: str | None = None) -> UpdateResult:
        if self._journal is not None:
            self._journal.result(result, task_id)
        return result


async def _cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until all have ended, even if this wait is itself cancelled."""
    for task in tasks:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    interrupted = False
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            interrupted = True
            for task in pending:
                task.cancel()
    for task in tasks:
        if not task.cancelled():
            task.exception()  # mark retrieved; workers report their own errors via the run
    if interrupted:
        raise asyncio.CancelledError
