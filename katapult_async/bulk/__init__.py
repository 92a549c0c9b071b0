"""The bulk engine: many speed-profile updates, exactly one :class:`UpdateResult` per input pair.

:func:`bulk_update` pulls ``(interface, speed_profile)`` pairs (or triples that add the previous
profile) lazily from a sync or async iterable
and hands each to one of ``concurrency`` long-lived worker coroutines. A worker validates the pair,
skips duplicates, consults the journal, sends the PATCH, waits for the task and puts the result on a
small bounded queue that the caller drains by iterating. No task is created per item, and nothing
grows with the input except a compact index of the interface ids seen (16 bytes a slot).

Journal (``journal=path``): a JSON Lines file, appended to and flushed after every line::

    {"event": "run", "status": "started", "run": 1, "at": 1700000000.1, "resumed": false}
    {"event": "attempt", "index": 3, "interface_id": "vmnet_...", "speed_profile": "1gbps",
     "at": 1700000000.101}
    {"event": "submitted", "index": 3, "interface_id": "vmnet_...", "speed_profile": "1gbps",
     "task_id": "task_...", "at": 1700000000.123, "task": {"id": "task_...", "name": "...",
     "status": "pending", "created_at": 1700000000.1, ...}}
    {"event": "result", "index": 3, "interface_id": "vmnet_...", "speed_profile": "1gbps",
     "outcome": "completed", "task_id": "task_...", "error": null, "error_type": null,
     "at": 1700000002.456, "task": {...}}
    {"event": "run", "status": "finished", "run": 1, "at": 1700000009.9}

Each run opens with a ``run`` line whose ``status`` is ``started`` (``resumed``: whether it
resumes the run before it; ``run``: its number in the file) and closes with one more:
``finished`` (every item got its result), ``halted`` (the run stopped itself, with a ``reason``:
see :class:`~katapult_async.errors.RunHaltedError`) or ``interrupted`` (cancelled, closed early,
or its input or ``on_progress`` failed). A process that is killed writes no closing line.

An ``attempt`` line is written just before each PATCH is sent; a ``submitted`` line the moment a
PATCH is accepted (before waiting for the task); a ``result`` line when an item finishes (with
``wait=False`` only the ``result`` line, whose outcome is ``submitted``, since it carries the same
task id). ``index`` is the position in that run's input; ``speed_profile`` is the requested id or
permalink as given; ``task`` is the task as last seen, whole (times in unix seconds). Optional keys:
``previous_speed_profile`` (when known), ``confirmed_after_lost_response`` (result lines, when true).
Journals written before these keys existed are read as before. The API token never reaches this
module.

One journal, one run: the run holds an exclusive advisory lock on the file (``flock`` on POSIX,
``msvcrt.locking`` on Windows) from its first iteration to its end; a second run on the same
journal raises :class:`~katapult_async.errors.JournalInUseError` before it sends anything. With
``journal_fsync=True`` the file is also fsync-ed at most 100 ms after any line and at the end.

A rerun with the same journal **resumes** the run it records only if that run did not finish
(``halted``, ``interrupted``, no closing line, or a journal written before run lines existed);
after a ``finished`` run it **starts a new run**, appended to the same file, which sends every
item as if there were no journal (``resume=True`` insists on resuming and raises
:class:`~katapult_async.errors.NothingToResumeError` instead; ``resume=False`` always starts a new
run). So a ``resumed`` result only ever comes from an unfinished run: after a run has finished,
the interfaces may have been changed by anyone, and only a new request can say what holds now.

When resuming, the latest relevant line for each interface decides, when it is for the same
requested profile:

* ``completed`` / ``already_assigned``: the item is not sent again; its result carries the recorded
  outcome and ``resumed=True``.
* a PATCH was accepted but the end is unknown (a ``submitted`` line, outcome ``submitted``, or an
  ``error`` with a task id such as a task timeout): with ``wait=True`` the task is read and, if it
  has not finished, polled, but not re-PATCHed (if the API no longer knows the task, the PATCH is
  sent again); with ``wait=False`` the item is reported ``submitted`` again without a request.
  These results are marked ``resumed=True`` too.
* an ``attempt`` with no answer recorded after it (the run stopped while the PATCH was out, or its
  answer was an error that may hide an applied change): the item is sent again, and if the API
  answers ``already_assigned`` it is confirmed as after a lost response (see :func:`bulk_update`).
* anything else (``failed``, errors before a PATCH was accepted, ``skipped``, a different profile,
  no line): the item is sent as usual (a ``skipped`` line changes nothing: the item keeps the
  state it had before).

Lines that cannot be parsed, such as a last line cut short by ``kill -9``, are ignored.

This module holds the entry point; the parts live in private modules, each importing only those
below it: ``_engine`` (the run: workers, result queue), ``_item`` (one pair's way to its result),
``_progress`` (the counters, ``on_progress`` and the budget's ETA), ``_options`` (``RunOptions``:
the keywords as one frozen value, checked once and handed down), ``_source`` (the lazy input and
pair parsing), ``_journal`` (``JournalRecord`` and the file), ``_seen`` (the duplicate index) and,
below them all, ``_types`` (``SupportsBulkUpdate``, public here: what the engine needs from a
client). Names with a leading underscore are for this package alone.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Sized

import attrs

from katapult_async import _telemetry
from katapult_async._callbacks import ProgressCallback
from katapult_async._rollout import Rollout
from katapult_async.bulk._engine import _BulkRun
from katapult_async.bulk._item import DEFAULT_CONFIRM_HORIZON as DEFAULT_CONFIRM_HORIZON
from katapult_async.bulk._options import RunOptions as _RunOptions
from katapult_async.bulk._progress import PROGRESS_INTERVAL as PROGRESS_INTERVAL
from katapult_async.bulk._types import SupportsBulkUpdate
from katapult_async.errors import (
    DuplicateItemError,
    JournalInUseError,
    NothingToResumeError,
    UnconfirmedUpdateError,
)
from katapult_async.models import BulkProgress, UpdateItem, UpdateResult

__all__ = [
    "DEFAULT_CONFIRM_HORIZON",
    "BulkProgress",
    "DuplicateItemError",
    "JournalInUseError",
    "NothingToResumeError",
    "SupportsBulkUpdate",
    "UnconfirmedUpdateError",
    "UpdateItem",
    "bulk_update",
]

# Defined in _types, public here: help() and annotations name it katapult_async.bulk.<name>.
SupportsBulkUpdate.__module__ = __name__


# --- public entry point -------------------------------------------------------------------------


def bulk_update(
    client: SupportsBulkUpdate,
    updates: Iterable[UpdateItem] | AsyncIterable[UpdateItem],
    *,
    concurrency: int = 16,
    max_tasks: int = 1000,
    wait: bool = True,
    on_progress: ProgressCallback[BulkProgress] | None = None,
    journal: str | os.PathLike[str] | None = None,
    task_timeout: float | None = None,
    total: int | None = None,
    journal_fsync: bool = False,
    record_previous: bool = False,
    confirm_horizon: float | None = None,
    timeout: float | None = None,
    resume: bool | None = None,
    rollout: Rollout | None = None,
) -> AsyncGenerator[UpdateResult, None]:
    """Update many interfaces concurrently; yield one :class:`UpdateResult` per input pair.

    Results come as items finish, not in input order (``index`` is the input position). Every pair
    gets exactly one result, and one item's failure never stops the others, unless it is an error
    no other item can escape (see *Halting* below):

    * the task completed: ``COMPLETED`` (with the final task);
    * the API said the profile is already assigned: ``ALREADY_ASSIGNED``. When that answer came
      to the retry of a PATCH whose response was lost (or follows a journaled ``attempt`` with no
      recorded answer), the lost attempt made the assignment and its unseen task may still fail
      and undo it, so the engine confirms: it waits out the task horizon (``confirm_horizon``)
      and sends the PATCH again. ``already_assigned`` again: ``ALREADY_ASSIGNED``; accepted (the
      unseen task failed and reverted): the new task is followed to ``COMPLETED`` or ``FAILED``.
      Either way the result has ``confirmed_after_lost_response=True``; this costs one request
      per lost response. Only if the confirming PATCH itself fails (its retries exhausted) is the
      result an ``ERROR`` with an :class:`UnconfirmedUpdateError`;
    * the task failed: ``FAILED`` (``task`` and ``error`` say how);
    * ``wait=False`` and the PATCH was accepted: ``SUBMITTED`` (with the pending task);
    * anything else: ``ERROR`` with ``error`` (and ``task`` if one was seen). That includes an item
      that is not a 2- or 3-tuple/list or holds a malformed id or profile (nothing is sent), a task
      timeout, an API or transport error after the client's retries, and a repeated interface: each
      interface is sent once per run, a later pair for it gets a :class:`DuplicateItemError`;
    * the run halted before the item was sent: ``SKIPPED`` (nothing sent; ``error`` says why);
    * with a ``rollout`` whose ``verify`` picked the item: ``COMPLETED`` with ``verified=True``
      when the interface read back has the profile, else ``ERROR`` with a
      :class:`~katapult_async.errors.VerificationError`.

    Halting: an error no other item can escape (a missing or invalid token
    ``missing_api_token``/``invalid_api_token``, ``unauthorized_network_for_api_token``,
    ``scope_not_granted``, or :class:`~katapult_async.errors.ConnectionFailedError`, the API
    unreachable once the client's retries are spent) stops the run at once rather than failing
    every item in turn. No new PATCH starts; the items already handed to the client (at most
    ``concurrency``) end as they would, their tasks awaited; the item that met the error is an
    ``ERROR`` with it, and every item not yet started (the rest of the input too) is ``SKIPPED``
    with one :class:`~katapult_async.errors.RunAbortedError` whose ``cause`` is that error. The
    iteration then ends normally; the last ``on_progress`` snapshot has ``halted`` set, and the
    journal closes the run as ``halted``, so a rerun with the same journal resumes it. A
    ``rollout`` halts the same way, at its canary or its failure threshold, with a
    :class:`~katapult_async.errors.RolloutHaltedError` (see :class:`~katapult_async.Rollout`).

    The input is consumed lazily: no more than ``concurrency + max_tasks`` pairs in progress plus
    a result buffer of ``min(concurrency, 32)`` are taken from it ahead of the results yielded,
    so a generator of any length runs in flat memory. ``concurrency`` bounds the items sending
    their requests (the read of ``record_previous``, the PATCH); an item whose PATCH was
    accepted waits for its task without holding one of those places, so that a job whose
    requests fit in the rate-limit budget sends every PATCH at once and ends with its slowest
    task. (Until the budget is known, from the rate-limit headers or a 429, an item keeps its
    place while it waits, as in earlier releases.) The client's rate limiter paces the requests
    themselves, task polls included.

    Stopping early: cancelling the task that iterates, calling ``aclose()``, or leaving an
    ``async with contextlib.aclosing(...)`` block stops taking input and sending PATCHes, cancels the
    waits in progress, closes the journal (which already holds a ``submitted`` line for every
    accepted PATCH, written the moment it was accepted, so a rerun polls those tasks) and leaves no
    task behind. Prefer ``aclosing`` over a bare
    ``break``, which leaves the clean-up to the garbage collector. A PATCH whose answer had not come
    when the run was stopped has an ``attempt`` line and no answer; a rerun sends it again and,
    if the API answers ``already_assigned``, confirms it as after a lost response.

    Args:
        client: A :class:`~katapult_async.client.KatapultClient` (or any object with its
            ``update_speed_profile``, ``wait_for_task``, ``poller`` and ``rate_limit``).
        updates: A sync or async iterable of ``(interface, speed_profile)`` pairs, in the forms
            :meth:`~katapult_async.client.KatapultClient.update_speed_profile` accepts, or of
            ``(interface, speed_profile, previous_speed_profile)`` triples (previous: a string, a
            :class:`SpeedProfileRef` or ``None``), whose third element becomes the result's
            ``previous_speed_profile``. An iterator passed in is left open; one this function
            creates (from an iterable) is closed.
        concurrency: How many items may send their requests at once (default 16).
        max_tasks: How many accepted tasks may be awaited at once, beyond those (default 1,000;
            it bounds the memory of a long run, not the request rate). ``0``: an item keeps its
            ``concurrency`` place until its task ends (as in earlier releases).
        wait: Wait for each task to finish (default). ``False``: stop once the PATCH is accepted.
        on_progress: Called, sync or async, with a :class:`BulkProgress` after items finish, at
            most every :data:`PROGRESS_INTERVAL` seconds, and once more when the run ends normally.
            An exception it raises ends the run (after the clean-up described above).
        journal: A JSON Lines file to append progress to and to resume from (see the module
            documentation). If the run it records did not finish, items already done in it are
            not sent again; after a finished run, a new run starts. Locked for the run.
        task_timeout: Seconds to wait for each task before its result is an ``ERROR`` with a
            :class:`~katapult_async.errors.TaskTimeoutError`; ``None`` waits as long as it takes.
        total: The number of pairs, for ``BulkProgress.total`` and ``eta``; defaults to
            ``len(updates)`` when ``updates`` has a length.
        journal_fsync: Also ``fsync`` the journal at most 100 ms after any line and at the end,
            so that a power loss loses at most that much (default False: flushed to the OS only).
        record_previous: For items without a previous profile, read the interface
            (``get_network_interface``, one request) before its PATCH and record its current
            profile as ``previous_speed_profile`` (in the result and the journal). An error
            reading it is the item's ``ERROR`` (nothing is PATCHed).
        confirm_horizon: Seconds a confirmation waits before its PATCH. ``None`` (default):
            learned, 1.5 x the p99 of the times this run's tasks took to be seen done (a
            resumed run counts those its journal recorded too, so it does not wait the default
            before confirming an unanswered attempt), or 2 x the poller's learned aim for the
            task name, or :data:`DEFAULT_CONFIRM_HORIZON` (10 s) when nothing is learned yet.
        timeout: Deprecated spelling of ``task_timeout`` (warns; removed in 0.4).
        resume: With a ``journal``: ``None`` (default) resumes the run it records unless that
            run finished (then a new run starts); ``True`` insists on resuming (raises
            :class:`NothingToResumeError` if the journal holds no unfinished run); ``False``
            starts a new run whatever the journal holds.
        rollout: A :class:`~katapult_async.Rollout`: a canary first, a halt past a failure
            threshold (strictly: at most ``max_failures + 1`` failures), and reading a share of
            the completed items back. ``None`` (default): every item is sent as it comes.

    Returns:
        An async generator of results.

    Raises:
        ValueError, TypeError: at once, for invalid options or an ``updates`` that is not iterable.
        JournalInUseError: on the first iteration, before any request, when another run holds
            the journal.
        NothingToResumeError: on the first iteration, before any request, with ``resume=True``
            when the journal holds no unfinished run.
        Exception: while iterating, an exception raised by the input iterator, after the items in
            progress have finished and been yielded; an ``OSError`` writing the journal, at once.
    """
    options = _RunOptions(
        concurrency=concurrency,
        max_tasks=max_tasks,
        wait=wait,
        on_progress=on_progress,
        journal=journal,
        task_timeout=_renamed_timeout(timeout, task_timeout, stacklevel=3),
        total=total,
        journal_fsync=journal_fsync,
        record_previous=record_previous,
        confirm_horizon=confirm_horizon,
        resume=resume,
        rollout=rollout,
    )
    sized_total: int | None = None
    if isinstance(updates, Sized):
        with contextlib.suppress(TypeError):
            sized_total = len(updates)
    if not isinstance(updates, (Iterable, AsyncIterable)):
        raise TypeError(
            f"updates must be an iterable or async iterable of pairs, not {type(updates).__name__}"
        )
    if total is None and sized_total is not None:
        options = attrs.evolve(options, total=sized_total)
    run = _BulkRun(client, updates, options, length=sized_total)
    # While OpenTelemetry is on: the katapult.bulk_update span, and the results counted by outcome.
    return _telemetry.traced_iteration(
        "katapult.bulk_update",
        run.results(),
        concurrency=options.concurrency,
        wait=options.wait,
        total=options.total,
    )


def _renamed_timeout(old: float | None, new: float | None, *, stacklevel: int) -> float | None:
    """``task_timeout``, taking the deprecated ``timeout`` spelling with a warning."""
    if old is None:
        return new
    warnings.warn(
        "timeout= is deprecated: use task_timeout= (seconds to wait for each task)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    if new is not None:
        raise TypeError("give task_timeout= only, not also the deprecated timeout=")
    return old
