"""The ``undo`` command: put back the profiles a journaled bulk run changed.

Every interface whose latest result in JOURNAL is ``completed`` is set back to its recorded
``previous_speed_profile``, as a bulk run of its own (paced, journaled in ``JOURNAL.undo.jsonl`` by
default, so resumable). Before each revert one GET checks that the interface still has the profile
the run set: one changed since by someone else is ``drifted`` and skipped (``--force`` reverts it
anyway); one that has its previous profile already is ``already in place``. Items with no recorded
previous profile are reported and skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import click

from katapult_async.bulk._journal import loads
from katapult_async.cli._app import (
    EXIT_FAILURE,
    Settings,
    error_message,
    pacing_options,
    run_command,
    settings_of,
)
from katapult_async.cli._input import Row
from katapult_async.cli._plan import profile_matches, profile_text
from katapult_async.cli._run import BulkOptions, ResultsWriter, bulk_client, run_bulk
from katapult_async.cli._view import BulkState, print_summary
from katapult_async.errors import KatapultError
from katapult_async.models import Outcome


@attrs.frozen
class Change:
    """One change a journaled run made: the interface, the profile set, the one before."""

    interface_id: str
    speed_profile: str
    previous: str | None


def read_changes(path: Path) -> list[Change]:
    """The ``completed`` changes of a journal, one per interface (its latest result decides)."""
    latest: dict[str, Change | None] = {}
    with open(path, "rb") as f:
        for line in f:
            record = loads(line)
            if record is None or record.event != "result":
                continue
            if record.outcome is Outcome.COMPLETED:
                latest[record.interface_id] = Change(
                    record.interface_id, record.speed_profile, record.previous_speed_profile
                )
            else:
                latest[record.interface_id] = None
    return [change for change in latest.values() if change is not None]


@attrs.define
class UndoReport:
    """What the checks before the reverts found."""

    in_place: int = 0
    drifted: list[str] = attrs.field(factory=list)
    no_previous: list[str] = attrs.field(factory=list)


async def revert_rows(
    settings: Settings, client: object, changes: list[Change], force: bool, report: UndoReport
) -> AsyncIterator[Row]:
    """A row per interface to revert, after checking its current profile (one GET each)."""
    from katapult_async.client import KatapultClient

    assert isinstance(client, KatapultClient)
    for line, change in enumerate(changes, 1):
        if change.previous is None:
            continue
        try:
            iface = await client.get_network_interface(change.interface_id)
        except (KatapultError, ValueError) as exc:
            message = settings.redact(error_message(exc))
            yield Row(line, change.interface_id, change.previous, f"cannot be read: {message}")
            continue
        current = iface.speed_profile
        if profile_matches(current, change.previous):
            report.in_place += 1
            continue
        if not profile_matches(current, change.speed_profile):
            report.drifted.append(
                f"{change.interface_id}: has {profile_text(current)}, the run set "
                f"{change.speed_profile}" + (" (reverted: --force)" if force else " (skipped)")
            )
            if not force:
                continue
        yield Row(line, change.interface_id, change.previous, previous=profile_text(current))


async def _undo(
    settings: Settings,
    changes: list[Change],
    options: BulkOptions,
    state: BulkState,
    writer: ResultsWriter,
    force: bool,
    report: UndoReport,
) -> int:
    async with bulk_client(settings, options, state) as client:
        rows = revert_rows(settings, client, changes, force, report)
        await run_bulk(settings, client, rows, options, state, writer)
    print_summary(settings.out, state)
    out = settings.out
    reverted = state.counts[Outcome.COMPLETED] + state.counts[Outcome.ALREADY_ASSIGNED]
    out.print(
        f"undo: {reverted} reverted, {report.in_place} already in place, "
        f"{len(report.drifted)} drifted, {len(report.no_previous)} without a previous profile",
        highlight=False,
    )
    for text in report.drifted[:20]:
        out.print(f"  drifted: {settings.redact(text)}", highlight=False)
    for interface_id in report.no_previous[:20]:
        out.print(f"  no previous profile recorded: {interface_id} (skipped)", highlight=False)
    skipped = (report.drifted and not force) or report.no_previous
    return EXIT_FAILURE if state.any_failed or skipped else 0


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
        changes = read_changes(journal_file)
    except OSError as exc:
        raise settings.command_error(exc) from None
    report = UndoReport(no_previous=[c.interface_id for c in changes if c.previous is None])
    if journal is None:
        journal = Path(f"{journal_file}.undo.jsonl")
    options = BulkOptions(
        concurrency=concurrency,
        rate_limit=rate_limit,
        window=window,
        journal=journal,
        wait=True,
        timeout=None,
    )
    state = BulkState(total=len(changes) - len(report.no_previous), wait=True)
    writer = ResultsWriter(output, settings)
    with contextlib.closing(writer):

        def interrupted() -> None:
            print_summary(settings.out, state, interrupted=True)
            settings.out.print("[bold yellow]interrupted: resume with the same command[/]")

        code = run_command(
            settings,
            lambda: _undo(settings, changes, options, state, writer, force, report),
            on_interrupt=interrupted,
        )
    ctx.exit(code)
