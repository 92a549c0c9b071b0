"""The ``bulk`` command: input rows through the bulk engine behind the live display, or a dry run.

:func:`run_bulk` is the one loop that feeds good rows to
:meth:`~katapult_async.client.KatapultClient.bulk_update_speed_profiles`, records every result
(bad rows included) in the :class:`~katapult_async.cli._view.BulkState` and the ``--output`` file,
and maps engine positions back to input line numbers; ``demo`` runs it too.
"""

from __future__ import annotations

import array
import contextlib
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import IO

import aiohttp
import attrs
import click
from rich.live import Live

from katapult_async._http import new_session
from katapult_async.bulk import DuplicateItemError, JournalInUseError
from katapult_async.bulk._journal import JournalRecord
from katapult_async.bulk._journal import dumps as journal_line
from katapult_async.cli._app import (
    EXIT_FAILURE,
    CommandError,
    Settings,
    error_message,
    pacing_options,
    run_command,
    settings_of,
)
from katapult_async.cli._commands import org_lookup
from katapult_async.cli._input import BulkInput, Row
from katapult_async.cli._plan import PlanFile, is_plan_file
from katapult_async.cli._select import Selection, selection_options
from katapult_async.cli._view import (
    REFRESH_PER_SECOND,
    BulkState,
    BulkView,
    RequestCounts,
    print_failures,
    print_summary,
)
from katapult_async.client import KatapultClient
from katapult_async.models import Outcome, UpdateItem, UpdateResult


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


class JournalBusyError(CommandError):
    """The journal is held by another run (``JournalInUseError``): exit status 2."""

    exit_code = 2


def _failure_text(line: int | None, interface_id: str, profile: str, message: str) -> str:
    where = f"line {line}: " if line is not None else ""
    return f"{where}{interface_id or '?'} → {profile or '?'}: {message}"


def _result_message(result: UpdateResult, lines: array.array[int]) -> str | None:
    """The error of a result in the user's terms (line numbers rather than input positions)."""
    error = result.error
    if error is None:
        return None
    if isinstance(error, DuplicateItemError) and 0 <= error.first_index < len(lines):
        return (
            f"interface {error.interface_id} duplicates line {lines[error.first_index]} "
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

    view = BulkView(state)
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
    )

    def record(result: UpdateResult) -> None:
        line = lines[result.index] if 0 <= result.index < len(lines) else None
        profile = "" if result.speed_profile is None else str(result.speed_profile)
        message = _result_message(result, lines)
        failure = None
        if result.outcome in (Outcome.FAILED, Outcome.ERROR):
            failure = settings.redact(
                _failure_text(line, result.interface_id, profile, message or "")
            )
        state.add(result.outcome, failure, resumed=result.resumed)
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
        with Live(view, console=settings.out, refresh_per_second=REFRESH_PER_SECOND):
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


async def _bulk(
    settings: Settings,
    rows: Iterable[Row],
    options: BulkOptions,
    state: BulkState,
    writer: ResultsWriter,
) -> int:
    async with bulk_client(settings, options, state) as client:
        try:
            await run_bulk(settings, client, rows, options, state, writer)
        except JournalInUseError as exc:  # before anything was sent
            raise JournalBusyError(settings.redact(error_message(exc))) from None
    print_summary(settings.out, state)
    return EXIT_FAILURE if state.any_failed else 0


async def _dry_run(
    settings: Settings, rows: Iterable[Row], organization: str | None, state: BulkState
) -> int:
    """Check every row (and, given an organization, every profile) without sending a PATCH."""
    known: set[str] | None = None
    if organization is not None:
        org_id, sub_domain = org_lookup(organization)
        async with settings.client() as client:
            profiles = await client.list_speed_profiles(
                organization_id=org_id, sub_domain=sub_domain
            )
        known = {p.id for p in profiles} | {p.permalink for p in profiles if p.permalink}
    first_line: dict[str, int] = {}
    for row in rows:
        problem = row.problem
        if problem is None and known is not None and row.speed_profile not in known:
            problem = f"unknown speed profile {row.speed_profile!r} in {organization}"
        if problem is None:
            first = first_line.setdefault(row.interface, row.line)
            if first != row.line:
                problem = f"interface {row.interface} duplicates line {first}"
        if problem is not None:
            state.add(Outcome.ERROR, settings.redact(f"line {row.line}: {problem}"))
        else:
            state.add(Outcome.SUBMITTED)
    state.finished = time.monotonic()
    valid, invalid = state.counts[Outcome.SUBMITTED], state.counts[Outcome.ERROR]
    checked = " (speed profiles checked)" if known is not None else ""
    settings.out.print(
        f"dry run: {valid + invalid} items, {valid} valid, {invalid} invalid{checked}; "
        "nothing was sent"
    )
    print_failures(settings.out, state)
    return EXIT_FAILURE if invalid else 0


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@selection_options
@click.option(
    "--record-previous",
    is_flag=True,
    help="Read each interface's profile before its PATCH (one extra request each) and record "
    "it in the journal, for `undo`. Applying a plan records it from the plan instead.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Items in progress at once (the rate limiter paces the requests themselves).",
)
@pacing_options
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Journal to resume from and append to [default: FILE.journal.jsonl; none for stdin].",
)
@click.option("--no-wait", is_flag=True, help="Do not wait for the tasks: stop at submitted.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one JSON line per item: line, interface_id, speed_profile, outcome, task_id, error.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only validate the input; send no update (with FILE and --organization: check the "
    "speed profiles against the organization).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for each task before it counts as an error.",
)
@click.option(
    "--durable",
    is_flag=True,
    help="fsync the journal at least every 100 ms, so that a power loss loses at most that much.",
)
@click.pass_context
def bulk(
    ctx: click.Context,
    file: str | None,
    organization: str | None,
    annotations: tuple[tuple[str, str], ...],
    vms: tuple[str, ...],
    to: str | None,
    record_previous: bool,
    concurrency: int,
    rate_limit: int | None,
    window: float,
    journal: Path | None,
    no_wait: bool,
    output: Path | None,
    dry_run: bool,
    timeout: float | None,
    durable: bool,
) -> None:
    """Update many interfaces from FILE (CSV or JSON Lines; - for stdin), a PLAN, or a selection.

    Instead of FILE, select the interfaces with --organization ORG [--annotation KEY=VALUE]...
    and/or --vm VM..., and give --to PROFILE. Given a PLAN (the --output of `plan`), only its
    `change` items are sent, and each one's previous profile is journaled for `undo`.

    A CSV file has the header `interface,speed_profile`; a JSON Lines file has one object
    `{"interface": ..., "speed_profile": ...}` a line. Bad rows are reported with their line
    number and the run goes on. The run is journaled: after Ctrl-C (or a crash) the same command
    resumes without updating the interfaces already done. Exit status 1 if any item failed.
    """
    settings = settings_of(ctx)
    selection = Selection(organization, annotations, vms, to)
    check_profiles = dry_run and file is not None and not (annotations or vms or to)
    if not check_profiles:
        selection.check(file)
    if file is None or is_plan_file(file):
        if dry_run:
            raise click.UsageError("--dry-run checks a FILE; use `plan` for a selection or a plan")
        _bulk_selection_or_plan(
            ctx,
            settings,
            file,
            selection,
            BulkOptions(
                concurrency=concurrency,
                rate_limit=rate_limit,
                window=window,
                journal=journal,
                wait=not no_wait,
                timeout=timeout,
                durable=durable,
                record_previous=record_previous,
            ),
            output,
        )
    assert file is not None
    try:
        source = BulkInput(file)
    except OSError as exc:
        raise settings.command_error(exc) from None
    with contextlib.closing(source):
        state = BulkState(total=source.count(), wait=not no_wait)
        if dry_run:
            ctx.exit(
                run_command(
                    settings, lambda: _dry_run(settings, source.rows(), organization, state)
                )
            )
        if journal is None and not source.is_stdin:
            journal = Path(f"{file}.journal.jsonl")
        options = BulkOptions(
            concurrency=concurrency,
            rate_limit=rate_limit,
            window=window,
            journal=journal,
            wait=not no_wait,
            timeout=timeout,
            durable=durable,
            record_previous=record_previous,
        )
        writer = ResultsWriter(output, settings)
        with contextlib.closing(writer):

            def interrupted() -> None:
                print_summary(settings.out, state, interrupted=True)
                hint = "interrupted: resume with the same command"
                if options.journal is None:
                    hint = "interrupted (no journal: a rerun sends every item again)"
                settings.out.print(f"[bold yellow]{hint}[/]")

            code = run_command(
                settings,
                lambda: _bulk(settings, source.rows(), options, state, writer),
                on_interrupt=interrupted,
            )
    ctx.exit(code)


def _bulk_selection_or_plan(
    ctx: click.Context,
    settings: Settings,
    plan_path: str | None,
    selection: Selection,
    options: BulkOptions,
    output: Path | None,
) -> None:
    """``bulk PLAN`` (its ``change`` items, with their previous profiles) or ``bulk --organization
    ... --to PROFILE`` (the selected interfaces, read a page at a time)."""
    plan_file = PlanFile(plan_path) if plan_path is not None else None
    journal = options.journal
    if journal is None:
        journal = Path(
            f"{plan_path}.journal.jsonl" if plan_path is not None else selection.journal_name()
        )
        options = attrs.evolve(options, journal=journal)
    state = BulkState(total=plan_file.count() if plan_file is not None else None, wait=options.wait)
    if plan_file is None:
        settings.out.print(
            f"selected: {selection.describe()} → {selection.to}; journal {journal}", highlight=False
        )

    async def work() -> int:
        async with counting_session(state.requests) as session:
            client = settings.client(
                rate_limit=options.rate_limit, rate_limit_window=options.window, session=session
            )
            async with client:
                rows: Iterable[Row] | AsyncIterable[Row] = (
                    plan_file.rows() if plan_file is not None else selection.rows(client)
                )
                await run_bulk(settings, client, rows, options, state, writer)
        print_summary(settings.out, state)
        if plan_file is not None:
            skipped = ", ".join(f"{n} {action}" for action, n in sorted(plan_file.skipped.items()))
            settings.out.print(
                f"plan: {plan_file.changes} change items applied; skipped: {skipped or 'none'}",
                highlight=False,
            )
        return EXIT_FAILURE if state.any_failed else 0

    writer = ResultsWriter(output, settings)
    with contextlib.closing(writer):

        def interrupted() -> None:
            print_summary(settings.out, state, interrupted=True)
            settings.out.print("[bold yellow]interrupted: resume with the same command[/]")

        code = run_command(settings, work, on_interrupt=interrupted)
    ctx.exit(code)
