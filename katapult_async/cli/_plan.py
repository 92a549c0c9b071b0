"""The ``plan`` command: what a bulk change would do, read from the API, with nothing changed.

A thin shell over :meth:`~katapult_async.client.KatapultClient.plan_speed_profiles`: for each
selected interface (from FILE or a selection), one paced GET reads its current speed profile; the
interface's action is ``change`` (it has another profile), ``unchanged`` (it has the target
already) or ``error`` (with the reason: a bad row, a duplicate, an interface that cannot be read).
A plan sends no PATCH. Its ``--output`` is JSON Lines in the record format the journal uses (see
:data:`PLAN_KEYS`), and ``bulk PLAN`` applies its ``change`` items. Exit status as ``kubectl
diff``: 0 nothing would change, 1 something would change or an item is in error, 2 usage.
"""

from __future__ import annotations

import array
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs
import click
from rich.table import Table

from katapult_async._plan import PlanAction, each, profile_text
from katapult_async._plan import PlanItem as LibraryPlanItem
from katapult_async.cli._app import (
    EXIT_FAILURE,
    Settings,
    error_message,
    pacing_options,
    run_command,
    settings_of,
)
from katapult_async.cli._input import BulkInput, Row
from katapult_async.cli._select import Selection, selection_options
from katapult_async.client import KatapultClient
from katapult_async.errors import DuplicateItemError
from katapult_async.models import UpdateItem

CHANGE, UNCHANGED, ERROR = (action.value for action in PlanAction)
"""A plan item's ``action``."""

PLAN_EVENT = "plan"
"""The ``event`` of a plan record: the journal's other events are ``submitted`` and ``result``."""

PLAN_KEYS = (
    "event",
    "index",
    "line",
    "interface_id",
    "virtual_machine",
    "current_speed_profile",
    "speed_profile",
    "previous_speed_profile",
    "action",
    "error",
    "at",
)
"""The keys of a plan record, in order. ``interface_id``, ``speed_profile`` (the target),
``previous_speed_profile`` (the current profile, recorded by ``bulk PLAN`` for ``undo``), ``error``,
``index`` and ``at`` mean what they mean in a journal record."""

MAX_TABLE_ROWS = 100
"""The most plan items the table lists (``--output`` has them all)."""


@attrs.frozen
class PlanItem:
    """One interface of a plan as the command shows and records it: in the user's terms (input
    line, profiles as text, the error redacted)."""

    index: int
    line: int | None
    interface_id: str
    virtual_machine: str | None
    current_speed_profile: str | None
    speed_profile: str
    action: str
    error: str | None = None

    def record(self) -> dict[str, Any]:
        """The JSON Lines record of the item (:data:`PLAN_KEYS`)."""
        return {
            "event": PLAN_EVENT,
            "index": self.index,
            "line": self.line,
            "interface_id": self.interface_id,
            "virtual_machine": self.virtual_machine,
            "current_speed_profile": self.current_speed_profile,
            "speed_profile": self.speed_profile,
            "previous_speed_profile": self.current_speed_profile,
            "action": self.action,
            "error": self.error,
            "at": round(time.time(), 3),
        }


async def plan_items(
    settings: Settings,
    client: KatapultClient,
    rows: Iterable[Row] | AsyncIterable[Row],
    concurrency: int,
) -> AsyncIterator[PlanItem]:
    """The plan item of every row, in input order: the good rows planned by the library
    (``concurrency`` GETs at a time, paced by the client's limiter), the bad ones errors without
    a request."""
    taken: deque[Row] = deque()  # rows taken from the input and not yet planned, in order
    lines: array.array[int] = array.array("q")  # the library's input position -> line

    async def good_rows() -> AsyncIterator[UpdateItem]:
        async for row in each(rows):
            taken.append(row)
            if row.problem is None:
                lines.append(row.line)
                yield row.interface, row.speed_profile

    def error_text(item: LibraryPlanItem) -> str | None:
        error = item.error
        if error is None:
            return None
        if isinstance(error, DuplicateItemError) and 0 <= error.first_index < len(lines):
            return f"interface {error.interface_id} duplicates line {lines[error.first_index]}"
        return settings.redact(error_message(error))

    index = 0

    def bad_rows() -> Iterator[PlanItem]:
        nonlocal index
        while taken and taken[0].problem is not None:
            row = taken.popleft()
            yield PlanItem(
                index, row.line, row.interface, None, None, row.speed_profile, ERROR, row.problem
            )
            index += 1

    planned = client.plan_speed_profiles(good_rows(), concurrency=concurrency)
    async with contextlib.aclosing(planned):
        async for item in planned:
            for bad in bad_rows():
                yield bad
            row = taken.popleft()
            yield PlanItem(
                index,
                row.line,
                row.interface,
                item.virtual_machine,
                profile_text(item.current_speed_profile),
                row.speed_profile,
                item.action.value,
                error_text(item),
            )
            index += 1
    for bad in bad_rows():
        yield bad


# --- reading a plan back ---------------------------------------------------------------------


def is_plan_file(path: str) -> bool:
    """Whether ``path`` is a plan: its first non-blank line is a JSON object with an ``action``."""
    if path == "-" or not Path(path).is_file():
        return False
    with open(path, "rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                return False
            return isinstance(data, dict) and data.get("event") == PLAN_EVENT and "action" in data
    return False


@attrs.define
class PlanFile:
    """A plan read back for ``bulk PLAN``: its ``change`` items as rows, and what it skipped."""

    path: str
    skipped: dict[str, int] = attrs.field(factory=dict)
    changes: int = 0

    def count(self) -> int:
        """The number of ``change`` items (reads the file once)."""
        return sum(1 for _ in self.rows(count_skipped=False))

    def rows(self, *, count_skipped: bool = True) -> Iterator[Row]:
        """A row per ``change`` item, with its previous profile; other items are counted."""
        with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
            for number, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    data = json.loads(text)
                except ValueError:
                    yield Row(number, "", "", "invalid JSON in the plan")
                    continue
                if not isinstance(data, dict):
                    yield Row(number, "", "", "a plan line must be a JSON object")
                    continue
                action = data.get("action")
                if action != CHANGE:
                    if count_skipped:
                        key = str(action)
                        self.skipped[key] = self.skipped.get(key, 0) + 1
                    continue
                interface, profile = data.get("interface_id"), data.get("speed_profile")
                previous = data.get("previous_speed_profile", data.get("current_speed_profile"))
                if not isinstance(interface, str) or not isinstance(profile, str):
                    yield Row(number, "", "", "a plan item needs interface_id and speed_profile")
                    continue
                if count_skipped:
                    self.changes += 1
                yield Row(
                    number,
                    interface,
                    profile,
                    previous=previous if isinstance(previous, str) else None,
                )


# --- the command -----------------------------------------------------------------------------


def _print_plan(settings: Settings, items: list[PlanItem], counts: dict[str, int]) -> None:
    out = settings.out
    shown = items
    if len(items) > MAX_TABLE_ROWS:
        shown = [i for i in items if i.action != UNCHANGED][:MAX_TABLE_ROWS]
    if shown:
        table = Table(title="Plan")
        table.add_column("interface", no_wrap=True)
        table.add_column("VM")
        table.add_column("current → target")
        table.add_column("action")
        for item in shown:
            action = item.action if item.error is None else f"error: {item.error}"
            style = {CHANGE: "yellow", UNCHANGED: "green"}.get(item.action, "red")
            table.add_row(
                item.interface_id or "?",
                item.virtual_machine or "-",
                f"{item.current_speed_profile or '?'} → {item.speed_profile or '?'}",
                f"[{style}]{action}[/]",
            )
        out.print(table)
        if len(shown) < len(items):
            out.print(f"({len(items) - len(shown)} more items not listed; --output has them all)")
    total = sum(counts.values())
    out.print(
        f"plan: {counts[CHANGE]} to change, {counts[UNCHANGED]} unchanged, "
        f"{counts[ERROR]} error{'s' if counts[ERROR] != 1 else ''} ({total} interfaces); "
        "nothing was changed",
        highlight=False,
    )


async def _plan(
    settings: Settings,
    source: BulkInput | None,
    selection: Selection,
    writer: IO[str] | None,
    concurrency: int,
    client_options: dict[str, Any],
) -> tuple[list[PlanItem], dict[str, int]]:
    counts = {CHANGE: 0, UNCHANGED: 0, ERROR: 0}
    items: list[PlanItem] = []
    rows: Iterable[Row] | AsyncIterable[Row]
    async with settings.client(**client_options) as client:
        rows = source.rows() if source is not None else selection.rows(client)
        async for item in plan_items(settings, client, rows, concurrency):
            counts[item.action] += 1
            if len(items) <= MAX_TABLE_ROWS * 10:
                items.append(item)
            if writer is not None:
                writer.write(json.dumps(item.record()) + "\n")
                writer.flush()
    return items, counts


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@selection_options
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the plan as JSON Lines (one record per interface; `bulk PLAN` applies it).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Interfaces read at once (the rate limiter paces the requests).",
)
@pacing_options
@click.pass_context
def plan(
    ctx: click.Context,
    file: str | None,
    organization: str | None,
    annotations: tuple[tuple[str, str], ...],
    vms: tuple[str, ...],
    to: str | None,
    output: Path | None,
    concurrency: int,
    rate_limit: int | None,
    window: float,
) -> None:
    """Show what a bulk change would do, without changing anything.

    Select the interfaces from FILE (as for `bulk`) or with --organization [--annotation
    KEY=VALUE]... and/or --vm VM..., with --to PROFILE. Each interface's current profile is read
    (one request each, paced) and shown against the target with its action: change, unchanged or
    error. Exit status 0 when nothing would change, 1 when something would change or an item is
    in error, 2 for a usage error. Run it again after `bulk` to verify: every interface is then
    unchanged.
    """
    settings = settings_of(ctx)
    selection = Selection(organization, annotations, vms, to)
    selection.check(file)
    options = {"rate_limit": rate_limit, "rate_limit_window": window}
    with contextlib.ExitStack() as stack:
        try:
            source = None
            if file is not None:
                source = stack.enter_context(contextlib.closing(BulkInput(file)))
            writer = None
            if output is not None:
                writer = stack.enter_context(open(output, "w", encoding="utf-8"))
        except OSError as exc:
            raise settings.command_error(exc) from None
        items, counts = run_command(
            settings,
            lambda: _plan(settings, source, selection, writer, concurrency, options),
        )
    _print_plan(settings, items, counts)
    if output is not None:
        settings.out.print(
            f"wrote the plan to {output}; apply it with: katapult-async bulk {output}",
            highlight=False,
        )
    ctx.exit(EXIT_FAILURE if counts[CHANGE] or counts[ERROR] else 0)
