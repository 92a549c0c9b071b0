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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import aiohttp
import attrs
import click
from rich.live import Live

from katapult_async._http import new_session
from katapult_async.bulk import DuplicateItemError
from katapult_async.cli._app import (
    EXIT_FAILURE,
    Settings,
    error_message,
    run_command,
    settings_of,
)
from katapult_async.cli._commands import org_lookup
from katapult_async.cli._input import BulkInput, Row
from katapult_async.cli._view import (
    REFRESH_PER_SECOND,
    BulkState,
    BulkView,
    RequestCounts,
    print_failures,
    print_summary,
)
from katapult_async.client import KatapultClient
from katapult_async.models import Outcome, UpdateResult


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
    ) -> None:
        if self._file is None:
            return
        record = {
            "line": line,
            "interface_id": interface_id,
            "speed_profile": speed_profile,
            "outcome": outcome.value,
            "task_id": task_id,
            "error": self._settings.redact(error) if error is not None else None,
        }
        self._file.write(json.dumps(record) + "\n")
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
    rows: Iterable[Row],
    options: BulkOptions,
    state: BulkState,
    writer: ResultsWriter,
) -> None:
    """Feed the good rows to the bulk engine behind the live display; record every result."""
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

    def items() -> Iterator[tuple[str, str]]:
        for row in rows:
            if row.problem is not None:
                record_bad(row)
                continue
            lines.append(row.line)
            yield row.interface, row.speed_profile

    view = BulkView(state)
    results = client.bulk_update_speed_profiles(
        items(),
        concurrency=options.concurrency,
        wait=options.wait,
        on_progress=view.on_progress,
        journal=options.journal,
        timeout=options.timeout,
        total=state.total,
    )

    def record(result: UpdateResult) -> None:
        line = lines[result.index] if 0 <= result.index < len(lines) else None
        message = _result_message(result, lines)
        failure = None
        if result.outcome in (Outcome.FAILED, Outcome.ERROR):
            failure = settings.redact(
                _failure_text(line, result.interface_id, result.speed_profile, message or "")
            )
        state.add(result.outcome, failure, resumed=result.resumed)
        writer.write(
            line=line,
            interface_id=result.interface_id,
            speed_profile=result.speed_profile,
            outcome=result.outcome,
            task_id=result.task.id if result.task is not None else None,
            error=message,
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


async def _bulk(
    settings: Settings,
    rows: Iterable[Row],
    options: BulkOptions,
    state: BulkState,
    writer: ResultsWriter,
) -> int:
    async with counting_session(state.requests) as session:
        client = settings.client(
            rate_limit=options.rate_limit, rate_limit_window=options.window, session=session
        )
        async with client:
            await run_bulk(settings, client, rows, options, state, writer)
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
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Items in progress at once (the rate limiter paces the requests themselves).",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    help="Requests permitted per window, if known (else learnt from the API's headers).",
)
@click.option(
    "--window",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Rate-limit window in seconds.",
)
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
@click.option("--dry-run", is_flag=True, help="Only validate the input; send no update.")
@click.option(
    "--organization",
    help="With --dry-run: check the speed profiles against this organization (org_... or "
    "sub-domain).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for each task before it counts as an error.",
)
@click.pass_context
def bulk(
    ctx: click.Context,
    file: str,
    concurrency: int,
    rate_limit: int | None,
    window: float,
    journal: Path | None,
    no_wait: bool,
    output: Path | None,
    dry_run: bool,
    organization: str | None,
    timeout: float | None,
) -> None:
    """Update many interfaces from FILE (CSV or JSON Lines; - for stdin).

    A CSV file has the header `interface,speed_profile`; a JSON Lines file has one object
    `{"interface": ..., "speed_profile": ...}` a line. Bad rows are reported with their line
    number and the run goes on. The run is journaled: after Ctrl-C (or a crash) the same command
    resumes without updating the interfaces already done. Exit status 1 if any item failed.
    """
    settings = settings_of(ctx)
    if organization is not None and not dry_run:
        raise click.UsageError("--organization is only used with --dry-run")
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
