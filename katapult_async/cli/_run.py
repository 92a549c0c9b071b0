"""The bulk-style run that ``bulk``, ``undo`` and ``demo`` share.

:func:`run_bulk` is the one loop that feeds good rows to
:meth:`~katapult_async.client.KatapultClient.bulk_update_speed_profiles`, records every result
(bad rows included) in the :class:`~katapult_async.cli._view.BulkState` and the ``--output`` file
(:class:`ResultsWriter`), and maps engine positions back to input line numbers.
:func:`bulk_client` is its client, paced by :class:`BulkOptions` and counting its requests
(:func:`counting_session`).
"""

from __future__ import annotations

import array
import contextlib
import json
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
)
from pathlib import Path
from typing import IO

import aiohttp
import attrs
from rich.live import Live

from katapult_async._http import new_session
from katapult_async.bulk import DuplicateItemError
from katapult_async.bulk._engine import fatal_cause
from katapult_async.bulk._journal import JournalRecord, previous_run
from katapult_async.bulk._journal import dumps as journal_line
from katapult_async.cli._app import (
    EXIT_ABORTED,
    EXIT_USAGE,
    CommandError,
    Settings,
    error_message,
)
from katapult_async.cli._input import Row
from katapult_async.cli._rollout import RolloutFlags
from katapult_async.cli._view import REFRESH_PER_SECOND, BulkState, BulkView, RequestCounts
from katapult_async.client import KatapultClient
from katapult_async.errors import RunAbortedError
from katapult_async.models import Outcome, UpdateItem, UpdateResult

__all__ = [
    "BulkOptions",
    "NothingToResumeUsageError",
    "ResultsWriter",
    "announce_journal",
    "bulk_client",
    "counting_session",
    "halt_exit",
    "run_bulk",
    "show_results",
]


def counting_session(counts: RequestCounts) -> aiohttp.ClientSession:
    """A session for the client that counts the requests it sends, and the 429s, into ``counts``."""

    async def on_start(*_: object) -> None:
        counts.requests += 1

    async def on_end(_session: object, _ctx: object, params: aiohttp.TraceRequestEndParams) -> None:
        if params.response.status == 429:
            counts.rate_limited += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    # the client's own session settings: same connection limit, no silent resend by aiohttp
    return new_session(trace_configs=[trace])


class ResultsWriter:
    """Writes one JSON line per result to ``--output`` (if given), flushed as results come."""

    def __init__(self, path: Path | None, settings: Settings) -> None:
        self._settings = settings
        self._file: IO[str] | None = (
            open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
            if path is not None
            else None
        )

    def write(
        self,
        *,
        line: int | None,
        interface_id: str,
        speed_profile: str,
        outcome: Outcome,
        task_id: str | None,
        error: str | None,
        result: UpdateResult | None = None,
    ) -> None:
        """One line in the journal's record format (a ``result`` :class:`JournalRecord`), plus
        ``line``; ``error`` in the user's terms (line numbers), redacted."""
        if self._file is None:
            return
        if result is not None:
            record = JournalRecord.from_result(result)
        else:  # a bad input row: nothing was sent
            record = JournalRecord(
                event="result",
                interface_id=interface_id,
                speed_profile=speed_profile,
                outcome=outcome,
                task_id=task_id,
                error=error,
                error_type="InvalidInput" if error is not None else None,
            )
        data = json.loads(journal_line(record))
        data["line"] = line
        data["error"] = self._settings.redact(error) if error is not None else None
        self._file.write(json.dumps(data) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@attrs.frozen
class BulkOptions:
    """How a bulk run sends: the engine's and the client's options from the command line."""

    concurrency: int
    rate_limit: int | None
    window: float
    journal: Path | None
    wait: bool
    timeout: float | None
    durable: bool = False
    record_previous: bool = False
    resume: bool | None = None
    """``--resume`` (True), ``--fresh`` (False), or neither: resume unless the run finished."""
    rollout: RolloutFlags | None = None
    """The rollout options (``--canary``, ``--max-failures``, ...), when any is given."""


class NothingToResumeUsageError(CommandError):
    """``--resume`` given, but the journal holds no unfinished run: exit status 2."""

    exit_code = EXIT_USAGE


def announce_journal(settings: Settings, options: BulkOptions) -> None:
    """Say in one line whether the run resumes its journal's run or starts a new one.

    Raises:
        NothingToResumeUsageError: ``--resume`` without a journal, or with one whose last run
            finished (or that records none). Nothing has been sent.
    """
    journal = options.journal
    if journal is None:
        if options.resume:
            raise NothingToResumeUsageError("--resume needs a journal (--journal PATH)")
        return
    previous = previous_run(journal)
    if options.resume and previous in ("none", "finished"):
        why = "its last run finished" if previous == "finished" else "it records no run"
        raise NothingToResumeUsageError(
            f"journal {journal}: {why}, so there is nothing to resume; "
            "run without --resume to start a new run"
        )
    if previous == "none":
        return
    if previous == "finished":
        line = "its last run finished; starting a new run (the journal keeps the old one)"
    elif options.resume is False:
        line = f"starting a new run (--fresh: its {previous} run is not resumed)"
    else:
        line = f"resuming its {previous} run (--fresh starts a new one)"
    settings.out.print(f"journal {journal}: {line}", markup=False, highlight=False)


def halt_exit(settings: Settings, state: BulkState) -> int | None:
    """After a run stopped by an error no item could escape: say so once, return its exit status.

    ``None`` when the run did not stop that way.
    """
    halted = state.progress.halted if state.progress is not None else None
    if not isinstance(halted, RunAbortedError):
        return None
    skipped = state.counts[Outcome.SKIPPED]
    settings.out.print(
        f"stopped: {settings.redact(halted.reason)}\n"
        f"{skipped} not started (nothing was sent for them); fix the cause and rerun the same "
        "command to resume",
        style="bold red",
        markup=False,
        highlight=False,
    )
    return EXIT_ABORTED


def _failure_text(line: int | None, interface_id: str, profile: str, message: str) -> str:
    where = f"line {line}: " if line is not None else ""
    return f"{where}{interface_id or '?'} → {profile or '?'}: {message}"


def _result_message(result: UpdateResult, line_of: Callable[[int], int | None]) -> str | None:
    """The error of a result in the user's terms (line numbers rather than input positions)."""
    error = result.error
    if error is None:
        return None
    if isinstance(error, DuplicateItemError):
        first = line_of(error.first_index)
        if first is not None:
            return (
                f"interface {error.interface_id} duplicates line {first} "
                "(each interface is updated at most once per run)"
            )
    return error_message(error)


async def run_bulk(
    settings: Settings,
    client: KatapultClient,
    rows: Iterable[Row] | AsyncIterable[Row],
    options: BulkOptions,
    state: BulkState,
    writer: ResultsWriter,
) -> None:
    """Feed the good rows to the bulk engine behind the live display; record every result.

    A row with a ``previous`` profile (from a plan) is sent as a triple, so that the journal
    records it for ``undo``.
    """
    # Engine input position -> line number; 8 bytes an item, the one thing kept per item.
    lines: array.array[int] = array.array("q")

    def record_bad(row: Row) -> None:
        state.add(Outcome.ERROR, settings.redact(row.message))
        writer.write(
            line=row.line,
            interface_id=row.interface,
            speed_profile=row.speed_profile,
            outcome=Outcome.ERROR,
            task_id=None,
            error=row.message,
        )

    def item_of(row: Row) -> UpdateItem | None:
        if row.problem is not None:
            record_bad(row)
            return None
        lines.append(row.line)
        if row.previous is not None:
            return row.interface, row.speed_profile, row.previous
        return row.interface, row.speed_profile

    def items() -> Iterator[UpdateItem]:
        assert not isinstance(rows, AsyncIterable)
        for row in rows:
            item = item_of(row)
            if item is not None:
                yield item

    async def async_items() -> AsyncIterator[UpdateItem]:
        assert isinstance(rows, AsyncIterable)
        async for row in rows:
            item = item_of(row)
            if item is not None:
                yield item

    def line_of(index: int) -> int | None:
        return lines[index] if 0 <= index < len(lines) else None

    announce_journal(settings, options)
    view = BulkView(state, window=options.window)
    results = client.bulk_update_speed_profiles(
        async_items() if isinstance(rows, AsyncIterable) else items(),
        concurrency=options.concurrency,
        wait=options.wait,
        on_progress=view.on_progress,
        journal=options.journal,
        task_timeout=options.timeout,
        total=state.total,
        journal_fsync=options.durable,
        record_previous=options.record_previous,
        resume=options.resume,
        rollout=options.rollout.rollout(settings, view) if options.rollout is not None else None,
    )
    await show_results(settings, results, state, writer, view, line_of)


async def show_results(
    settings: Settings,
    results: AsyncGenerator[UpdateResult, None],
    state: BulkState,
    writer: ResultsWriter,
    view: BulkView,
    line_of: Callable[[int], int | None],
) -> None:
    """Record every result of a bulk-style run behind the live display (``view``, which the
    run's ``on_progress`` feeds); ``line_of`` maps a result's index to its input line."""

    def record(result: UpdateResult) -> None:
        line = line_of(result.index)
        profile = "" if result.speed_profile is None else str(result.speed_profile)
        message = _result_message(result, line_of)
        failure = None
        # An error that stopped the run is told once, by halt_exit(), not once per item.
        if result.outcome in (Outcome.FAILED, Outcome.ERROR) and fatal_cause(result.error) is None:
            failure = settings.redact(
                _failure_text(line, result.interface_id, profile, message or "")
            )
        state.add(result.outcome, failure, resumed=result.resumed)
        state.verified += result.verified
        writer.write(
            line=line,
            interface_id=result.interface_id,
            speed_profile=profile,
            outcome=result.outcome,
            task_id=result.task.id if result.task is not None else None,
            error=message,
            result=result,
        )

    try:
        with Live(view, console=settings.out, refresh_per_second=REFRESH_PER_SECOND) as live:
            view.live = live
            # Closing stops the engine at once (also on Ctrl-C): no new PATCH, journal closed.
            async with contextlib.aclosing(results):
                async for result in results:
                    record(result)
    finally:
        state.finished = time.monotonic()
        if not settings.out.is_terminal:
            settings.out.line()  # rich ends its one final render without a newline


@contextlib.asynccontextmanager
async def bulk_client(
    settings: Settings, options: BulkOptions, state: BulkState
) -> AsyncIterator[KatapultClient]:
    """The client of a bulk-style run, paced by ``options`` and counting into ``state.requests``."""
    async with counting_session(state.requests) as session:
        client = settings.client(
            rate_limit=options.rate_limit, rate_limit_window=options.window, session=session
        )
        async with client:
            yield client
