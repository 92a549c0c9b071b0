"""The run of one :func:`~katapult_async.bulk.bulk_update` call: workers, result queue, progress.

``concurrency + max_tasks`` long-lived worker coroutines (``concurrency`` without ``wait``) pull
pairs from the input (``_PairSource``), turn each into its result (``_ItemProcessor``, which lets
only ``concurrency`` of them send at once: awaiting a task holds no place) and put it on a small
bounded queue that the caller drains by iterating; ``_Progress`` (``_progress``) keeps the counters
and makes the throttled ``on_progress`` calls. No task is created per item. Stopping, normally or
not, cancels and reaps the workers, closes an input iterator the run created and closes the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from typing import TYPE_CHECKING

from katapult_async._rollout import RolloutGate
from katapult_async.bulk._item import _ItemProcessor
from katapult_async.bulk._journal import _Journal
from katapult_async.bulk._options import RunOptions
from katapult_async.bulk._progress import _Progress
from katapult_async.bulk._source import _PairSource
from katapult_async.errors import (
    ConnectionFailedError,
    InvalidAPITokenError,
    KatapultError,
    MissingAPITokenError,
    RunAbortedError,
    RunHaltedError,
    ScopeNotGrantedError,
    UnauthorizedNetworkForAPITokenError,
)
from katapult_async.models import UpdateItem, UpdateResult

if TYPE_CHECKING:
    from katapult_async.bulk._types import SupportsBulkUpdate

logger = logging.getLogger("katapult_async")

_MAX_RESULT_BUFFER = 32


FATAL_ERRORS: tuple[type[KatapultError], ...] = (
    MissingAPITokenError,
    InvalidAPITokenError,
    UnauthorizedNetworkForAPITokenError,
    ScopeNotGrantedError,
    ConnectionFailedError,
)
"""Errors no other item of the run can escape: the first one stops the run (``RunAbortedError``).
A connection failure is one only once the client's retries are spent."""


def fatal_cause(error: BaseException | None) -> KatapultError | None:
    """The error no other item can escape in an item's ``error`` (or its ``__cause__``), if any."""
    for candidate in (error, error.__cause__ if error is not None else None):
        if isinstance(candidate, FATAL_ERRORS):
            return candidate
    return None


class _Wake:
    """Put on the result queue to make the consumer look at the run's state again."""


_WAKE = _Wake()


class _BulkRun:
    """The state of one :func:`bulk_update` call: the input, the workers, the queue, the journal."""

    def __init__(
        self,
        client: SupportsBulkUpdate,
        updates: Iterable[UpdateItem] | AsyncIterable[UpdateItem],
        options: RunOptions,
        *,
        length: int | None = None,
    ) -> None:
        self._client = client
        self._options = options
        self._source = _PairSource(updates)
        concurrency = options.concurrency
        # ``concurrency`` workers, and once the budget is known (an item awaiting its task then
        # holds no sending place), up to ``max_tasks`` more. An input of known length needs no
        # more workers than items.
        self._workers = concurrency if length is None else max(1, min(concurrency, length))
        more = options.max_tasks if options.wait else 0
        self._more = (
            more if length is None else max(0, min(concurrency + more, length) - self._workers)
        )
        self._buffer = min(concurrency, _MAX_RESULT_BUFFER)
        self.processor: _ItemProcessor | None = None
        self._progress = _Progress(
            client, total=options.total, on_progress=options.on_progress, wait=options.wait
        )
        self._fatal: BaseException | None = None
        self.halted: RunHaltedError | None = None
        self._journal: _Journal | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._live = 0
        self._queue: asyncio.Queue[UpdateResult | _Wake] | None = None

    # --- the consumer side ----------------------------------------------------------------------

    async def results(self) -> AsyncGenerator[UpdateResult, None]:
        """Start the workers and yield their results; clean up however the iteration ends."""
        progress = self._progress
        progress.start()
        try:
            options = self._options
            if options.journal is not None:
                # First: a journal another run holds (JournalInUseError) stops it before anything.
                journal = self._journal = _Journal(options.journal, fsync=options.journal_fsync)
                previous = journal.previous
                if journal.begin(options.resume):
                    logger.info("journal %s: resuming its %s run", journal.path, previous)
                elif previous != "none":
                    logger.info(
                        "journal %s: its last run %s; starting a new run",
                        journal.path,
                        "finished" if previous == "finished" else f"was {previous}",
                    )
            self._source.open()
            processor = self.processor = _ItemProcessor(
                self._client, options, journal=self._journal, progress=progress
            )
            if options.rollout is not None:
                processor.gate = RolloutGate(
                    options.rollout, on_halt=self.halt, stopped=lambda: self.halted is not None
                )
            queue = self._queue = asyncio.Queue(self._buffer)
            if self._more:
                processor.budget_known = self._add_workers
            self._add_workers(self._workers)
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if self._live == 0 and queue.empty():
                    break
                item = await queue.get()
                if isinstance(item, _Wake):
                    continue
                progress.count(item)
                await progress.report(started=self._source.taken, final=False)
                yield item
            if self._source.error is not None:
                raise self._source.error
            if self._journal is not None:
                halted = self.halted
                if halted is None:
                    self._journal.end("finished")
                else:
                    self._journal.end("halted", halted.reason)
            await progress.report(started=self._source.taken, final=True)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        """Cancel and reap the workers, close the input iterator if ours, close the journal."""
        try:
            await _cancel_and_wait(self._tasks)
        finally:
            try:
                await self._source.close()
            finally:
                if self._journal is not None:
                    try:
                        with contextlib.suppress(OSError):  # the write error is already raised
                            self._journal.end("interrupted")  # unless it ended (finished)
                    finally:
                        self._journal.close()

    # --- the workers ----------------------------------------------------------------------------

    def _add_workers(self, count: int | None = None) -> None:
        """Start ``count`` workers (by default the ``max_tasks`` more, once the budget is known)."""
        processor = self.processor
        assert processor is not None
        if count is None:
            count, self._more = self._more, 0
            processor.budget_known = None
        self._live += count
        loop = asyncio.get_running_loop()
        for _ in range(count):
            self._tasks.append(loop.create_task(self._work(processor)))

    async def _work(self, processor: _ItemProcessor) -> None:
        queue = self._queue
        assert queue is not None
        try:
            while True:
                pulled = await self._source.pull()
                if pulled is None:
                    return
                result = await processor.process(*pulled)
                self._progress.finished += 1
                cause = fatal_cause(result.error)
                if cause is not None:
                    self.halt(RunAbortedError(cause))
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

    def halt(self, error: RunHaltedError) -> None:
        """Halt the run with ``error``; the first halt wins, later ones are ignored.

        No new update starts: each item not yet started (the rest of the input included, taken
        as usual) gets one ``SKIPPED`` result carrying ``error``, journaled; items in flight end
        as they would (their tasks awaited). The run then ends normally, its journal closed with
        a ``halted`` line (``error.reason``) so that a rerun resumes it, and its progress
        snapshots carry ``halted``.
        """
        if self.halted is not None:
            return
        logger.info("bulk run halted: %s", error.reason)
        self.halted = self._progress.halted = error
        if self.processor is not None:
            self.processor.halted = error
            if self.processor.gate is not None:
                self.processor.gate.wake()  # items waiting for the rollout's gate are skipped

    def _wake(self) -> None:
        assert self._queue is not None
        # A full queue means the consumer is not waiting: it re-checks the state before each get.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_WAKE)


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
