"""The ``bulk`` command: input rows (a file, a plan or a selection) through the shared bulk run
(:mod:`katapult_async.cli._run`) behind the live display, or a dry run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterable, Iterable
from pathlib import Path

import attrs
import click

from katapult_async.bulk import JournalInUseError, NothingToResumeError
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
from katapult_async.cli._rollout import RolloutFlags, halted_exit, rollout_options
from katapult_async.cli._run import (
    BulkOptions,
    NothingToResumeUsageError,
    ResultsWriter,
    bulk_client,
    halt_exit,
)
from katapult_async.cli._select import Selection, selection_options
from katapult_async.cli._undo import run_or_finish_revert
from katapult_async.cli._view import BulkState, print_failures, print_summary
from katapult_async.models import Outcome


class JournalBusyError(CommandError):
    """The journal is held by another run (``JournalInUseError``): exit status 2."""

    exit_code = 2


async def _bulk(
    settings: Settings,
    rows: Iterable[Row],
    options: BulkOptions,
    state: BulkState,
    writer: ResultsWriter,
) -> int:
    async with bulk_client(settings, options, state) as client:
        try:
            await run_or_finish_revert(settings, client, rows, options, state, writer)
        except JournalInUseError as exc:  # before anything was sent
            raise JournalBusyError(settings.redact(error_message(exc))) from None
        except NothingToResumeError as exc:  # the journal finished since it was announced
            raise NothingToResumeUsageError(settings.redact(error_message(exc))) from None
    print_summary(settings.out, state)
    return _exit_status(settings, state)


def _exit_status(settings: Settings, state: BulkState) -> int:
    """The exit status of a run (after its summary): 3 a rollout halted, 4 an error no item
    escapes stopped it (each says so once), 1 an item failed, else 0."""
    halted = halted_exit(settings, state)
    if halted is not None:
        return halted
    aborted = halt_exit(settings, state)
    if aborted is not None:
        return aborted
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
@click.option(
    "--resume/--fresh",
    default=None,
    help="--resume: insist on resuming the journal's unfinished run (exit 2 if its last run "
    "finished); --fresh: start a new run whatever the journal holds. Neither: resume a run that "
    "was interrupted or halted, start a new run after one that finished.",
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
@rollout_options
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
    resume: bool | None,
    no_wait: bool,
    output: Path | None,
    dry_run: bool,
    timeout: float | None,
    durable: bool,
    canary: int,
    max_failures: tuple[int | None, float | None],
    min_sample: int,
    verify: float,
    on_halt: str,
    yes: bool,
) -> None:
    """Update many interfaces from FILE (CSV or JSON Lines; - for stdin), a PLAN, or a selection.

    Instead of FILE, select the interfaces with --organization ORG [--annotation KEY=VALUE]...
    and/or --vm VM..., and give --to PROFILE. Given a PLAN (the --output of `plan`), only its
    `change` items are sent, and each one's previous profile is journaled for `undo`.

    A CSV file has the header `interface,speed_profile`; a JSON Lines file has one object
    `{"interface": ..., "speed_profile": ...}` a line. Bad rows are reported with their line
    number and the run goes on. The run is journaled: after Ctrl-C (or a crash) the same command
    resumes without updating the interfaces already done; once a run has finished, the same
    command starts a new run (--resume/--fresh make the intent explicit). Exit status 1 if any
    item failed.

    A rollout: --canary N sends N items first and goes on only if they succeed (on a terminal,
    after asking); --max-failures N|P% halts the run past that many failures (strictly: at most
    N+1); --verify reads interfaces back. A halted run exits 3, its items not started skipped:
    rerun to resume them, or give --on-halt revert to put back what it changed.
    """
    settings = settings_of(ctx)
    flags = RolloutFlags(canary, max_failures, min_sample, verify, on_halt, yes)
    rollout = flags if flags.wanted else None
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
                resume=resume,
                rollout=rollout,
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
        flags.check(journal=journal, previous_known=record_previous, wait=not no_wait)
        state.rollout = rollout is not None
        options = BulkOptions(
            concurrency=concurrency,
            rate_limit=rate_limit,
            window=window,
            journal=journal,
            wait=not no_wait,
            timeout=timeout,
            durable=durable,
            record_previous=record_previous,
            resume=resume,
            rollout=rollout,
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
    if options.rollout is not None:
        options.rollout.check(
            journal=journal,
            previous_known=plan_file is not None or options.record_previous,
            wait=options.wait,
        )
    state = BulkState(total=plan_file.count() if plan_file is not None else None, wait=options.wait)
    state.rollout = options.rollout is not None
    if plan_file is None:
        settings.out.print(
            f"selected: {selection.describe()} → {selection.to}; journal {journal}", highlight=False
        )

    async def work() -> int:
        async with bulk_client(settings, options, state) as client:
            rows: Iterable[Row] | AsyncIterable[Row] = (
                plan_file.rows() if plan_file is not None else selection.rows(client)
            )
            await run_or_finish_revert(settings, client, rows, options, state, writer)
        print_summary(settings.out, state)
        if plan_file is not None:
            skipped = ", ".join(f"{n} {action}" for action, n in sorted(plan_file.skipped.items()))
            settings.out.print(
                f"plan: {plan_file.changes} change items applied; skipped: {skipped or 'none'}",
                highlight=False,
            )
        return _exit_status(settings, state)

    writer = ResultsWriter(output, settings)
    with contextlib.closing(writer):

        def interrupted() -> None:
            print_summary(settings.out, state, interrupted=True)
            settings.out.print("[bold yellow]interrupted: resume with the same command[/]")

        code = run_command(settings, work, on_interrupt=interrupted)
    ctx.exit(code)
