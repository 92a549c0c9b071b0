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

This module holds the entry point and the client protocol; the parts live in private modules:
``_engine`` (the run: workers, result queue, progress), ``_item`` (one pair's way to its result),
``_source`` (the lazy input and pair parsing), ``_journal`` (``JournalRecord`` and the file)
and ``_seen`` (the duplicate index). Names with a leading underscore are for this package alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Sized
from typing import Protocol

from katapult_async._callbacks import ProgressCallback
from katapult_async.bulk._engine import PROGRESS_INTERVAL as PROGRESS_INTERVAL
from katapult_async.bulk._engine import _BulkRun
from katapult_async.errors import DuplicateItemError, UnconfirmedUpdateError
from katapult_async.models import (
    BulkProgress,
    NetworkInterfaceRef,
    SpeedProfileRef,
    Task,
    UpdateItem,
    UpdateResult,
)

__all__ = [
    "BulkProgress",
    "DuplicateItemError",
    "SupportsBulkUpdate",
    "UnconfirmedUpdateError",
    "UpdateItem",
    "bulk_update",
]


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
