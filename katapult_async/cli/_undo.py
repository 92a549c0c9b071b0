"""The ``undo`` command: put back the profiles a journaled bulk run changed.

A thin shell over :meth:`~katapult_async.client.KatapultClient.revert_speed_profiles`: every
interface whose latest result in JOURNAL is ``completed`` is set back to its recorded
``previous_speed_profile``, as a bulk run of its own (paced, journaled in ``JOURNAL.undo.jsonl``
by default, so resumable). Before each revert one GET checks that the interface still has the
profile the run set: one changed since by someone else is ``drifted`` and skipped (``--force``
reverts it anyway); one that has its previous profile already is ``already in place``. Items with
no recorded previous profile are reported and skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from pathlib import Path

import attrs
import click

from katapult_async._revert import read_changes, revert_journal_path, revert_pending
from katapult_async.cli._app import (
    EXIT_FAILURE,
    Settings,
    pacing_options,
    run_command,
    settings_of,
)
from katapult_async.cli._input import Row
from katapult_async.cli._rollout import revert_journal, rollout_halt
from katapult_async.cli._run import (
    BulkOptions,
    ResultsWriter,
    bulk_client,
    run_bulk,
    show_results,
)
from katapult_async.cli._view import BulkState, BulkView, print_failures, print_summary
from katapult_async.client import KatapultClient
from katapult_async.errors import DriftedError, NoPreviousProfileError
from katapult_async.models import Outcome, UpdateResult


@attrs.define
class UndoReport:
    """What a revert found besides the reverts themselves: in place, drifted, no previous."""

    in_place: int = 0
    drifted: list[str] = attrs.field(factory=list)
    no_previous: list[str] = attrs.field(factory=list)

    def note(self, result: UpdateResult, force: bool) -> None:
        """Count ``result`` if it is one of those."""
        error = result.error
        if result.outcome is Outcome.ALREADY_ASSIGNED:
            self.in_place += 1
        elif isinstance(error, DriftedError):
            self.drifted.append(
                f"{error.interface_id}: has {error.actual or 'no profile'}, the run set "
                f"{error.expected}" + (" (reverted: --force)" if force else " (skipped)")
            )
        elif isinstance(error, NoPreviousProfileError):
            self.no_previous.append(error.interface_id)


async def revert(
    settings: Settings,
    client: KatapultClient,
    journal_file: Path,
    options: BulkOptions,
    state: BulkState,
    writer: ResultsWriter,
    force: bool,
    *,
    last_run: bool = False,
) -> UndoReport:
    """Revert what the run of ``journal_file`` changed, behind the live display; what it found.

    ``options.journal`` is the revert's own journal; ``last_run``: only the journal's last run.
    Shared by ``undo`` and ``bulk --on-halt revert``.
    """
    report = UndoReport()
    view = BulkView(state, window=options.window)
    results = client.revert_speed_profiles(
        journal_file,
        force=force,
        revert_journal=options.journal,
        concurrency=options.concurrency,
        on_progress=view.on_progress,
        task_timeout=options.timeout,
        journal_fsync=options.durable,
        last_run=last_run,
    )

    async def noted() -> AsyncGenerator[UpdateResult, None]:
        async with contextlib.aclosing(results):
            async for result in results:
                report.note(result, force)
                yield result

    await show_results(settings, noted(), state, writer, view, lambda _index: None)
    return report


async def run_or_finish_revert(
    settings: Settings,
    client: KatapultClient,
    rows: Iterable[Row] | AsyncIterable[Row],
    options: BulkOptions,
    state: BulkState,
    writer: ResultsWriter,
) -> None:
    """The bulk run, then ``--on-halt revert`` if it halted; or, when an earlier run of the same
    command halted and its revert did not finish (Ctrl-C, a crash), only that revert: a rerun
    finishes it rather than roll out again."""
    flags, journal = options.rollout, options.journal
    if flags is not None and flags.revert and journal is not None and revert_pending(journal):
        settings.out.print(
            f"journal {journal}: its run halted and its revert did not finish; finishing the "
            "revert (--on-halt revert)",
            markup=False,
            highlight=False,
        )
        await revert_after_halt(settings, client, options, state, pending=True)
        return
    await run_bulk(settings, client, rows, options, state, writer)
    await revert_after_halt(settings, client, options, state)


async def revert_after_halt(
    settings: Settings,
    client: KatapultClient,
    options: BulkOptions,
    state: BulkState,
    *,
    pending: bool = False,
) -> None:
    """``--on-halt revert``: after a rollout halted (or with ``pending``, a revert left
    unfinished), revert every interface the run changed (the journal's last run, drift-checked,
    journaled in ``JOURNAL.undo.jsonl``); count them in ``state.reverted``. Nothing when the run
    did not halt so, or the option was not given."""
    halted = rollout_halt(state)
    if options.rollout is None or not options.rollout.revert or (halted is None and not pending):
        return
    assert options.journal is not None  # checked with the options
    why = settings.redact(halted.reason) if halted is not None else "an earlier run"
    settings.out.print(
        f"halted: {why}; reverting what this run changed (--on-halt revert)",
        style="bold yellow",
        markup=False,
        highlight=False,
    )
    undo = BulkState(total=None, wait=True)
    undo_options = attrs.evolve(options, journal=revert_journal(options.journal), rollout=None)
    writer = ResultsWriter(None, settings)
    report = await revert(
        settings, client, options.journal, undo_options, undo, writer, False, last_run=True
    )
    state.reverted = undo.counts[Outcome.COMPLETED]
    print_report(settings, undo, report, title="revert")
    if undo.failure_count:
        settings.out.print(f"[bold red]revert failures[/] ({undo.failure_count}):")
        print_failures(settings.out, undo)


def print_report(settings: Settings, state: BulkState, report: UndoReport, *, title: str) -> None:
    """The line that sums up a revert, then its drifted and unrecorded interfaces."""
    out = settings.out
    reverted = state.counts[Outcome.COMPLETED]
    out.print(
        f"{title}: {reverted} reverted, {report.in_place} already in place, "
        f"{len(report.drifted)} drifted, {len(report.no_previous)} without a previous profile",
        highlight=False,
    )
    for text in report.drifted[:20]:
        out.print(f"  drifted: {settings.redact(text)}", highlight=False)
    for interface_id in report.no_previous[:20]:
        out.print(f"  no previous profile recorded: {interface_id} (skipped)", highlight=False)


async def _undo(
    settings: Settings,
    journal_file: Path,
    options: BulkOptions,
    state: BulkState,
    writer: ResultsWriter,
    force: bool,
) -> int:
    async with bulk_client(settings, options, state) as client:
        report = await revert(settings, client, journal_file, options, state, writer, force)
    print_summary(settings.out, state)
    print_report(settings, state, report, title="undo")
    return EXIT_FAILURE if state.any_failed or state.counts[Outcome.SKIPPED] else 0


@click.command()
@click.argument("journal_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The undo run's own journal [default: JOURNAL.undo.jsonl].",
)
@click.option("--force", is_flag=True, help="Revert drifted interfaces too.")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
@pacing_options
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one JSON line per revert (the journal's record format).",
)
@click.pass_context
def undo(
    ctx: click.Context,
    journal_file: Path,
    journal: Path | None,
    force: bool,
    concurrency: int,
    rate_limit: int | None,
    window: float,
    output: Path | None,
) -> None:
    """Set every interface a bulk run changed (per its JOURNAL) back to its previous profile.

    Only items the run completed are reverted, to the previous profile recorded in the journal
    (`bulk PLAN` and `bulk --record-previous` record it). Before each revert one request checks
    that the interface still has the profile the run set; one changed since is reported as
    drifted and skipped unless --force. The undo is journaled (JOURNAL.undo.jsonl): rerun it
    after Ctrl-C or a crash. Exit 0 when every revert completed or was already in place.
    """
    settings = settings_of(ctx)
    try:
        total = len(read_changes(journal_file))
    except OSError as exc:
        raise settings.command_error(exc) from None
    options = BulkOptions(
        concurrency=concurrency,
        rate_limit=rate_limit,
        window=window,
        journal=journal if journal is not None else Path(revert_journal_path(journal_file)),
        wait=True,
        timeout=None,
    )
    state = BulkState(total=total, wait=True)
    writer = ResultsWriter(output, settings)
    with contextlib.closing(writer):

        def interrupted() -> None:
            print_summary(settings.out, state, interrupted=True)
            settings.out.print("[bold yellow]interrupted: resume with the same command[/]")

        code = run_command(
            settings,
            lambda: _undo(settings, journal_file, options, state, writer, force),
            on_interrupt=interrupted,
        )
    ctx.exit(code)
