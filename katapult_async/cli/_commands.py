"""The single-item commands: ``update``, ``task``, ``profiles``, ``interfaces`` and ``budget``.

Each click command only parses its options and hands a coroutine to
:func:`~katapult_async.cli._app.run_command`; the coroutine talks to the API and prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from katapult_async._convert import converter
from katapult_async._validate import validate_identifier
from katapult_async.cli._app import (
    EXIT_FAILURE,
    CommandError,
    Settings,
    run_command,
    settings_of,
)
from katapult_async.cli._view import REFRESH_PER_SECOND
from katapult_async.errors import (
    SpeedProfileAlreadyAssignedError,
    TaskFailedError,
    TaskNotFoundError,
)
from katapult_async.models import Task, TaskStatus

T = TypeVar("T")
FC = TypeVar("FC", bound=Callable[..., Any])


def json_option(command: FC) -> FC:
    """``--json``: print JSON Lines (one object per line) instead of a table."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON object per line (times in unix seconds) instead of a table.",
    )(command)


def print_json_lines(items: Iterable[object]) -> None:
    """Each value (a model, or a plain dict) as one line of JSON on stdout, as the API names it."""
    for item in items:
        data = item if isinstance(item, dict) else converter.unstructure(item)
        click.echo(json.dumps(data, ensure_ascii=False))


# --- update / task -------------------------------------------------------------------------


def _task_progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=REFRESH_PER_SECOND,
        transient=True,
    )


class _TaskBar:
    """Follows one task on a rich progress bar (the poller's ``on_progress`` callback)."""

    def __init__(self, progress: Progress, label: str = "") -> None:
        self._progress = progress
        self._prefix = f"{label} " if label else ""
        self._id = progress.add_task(f"{self._prefix}submitting", total=100)

    def __call__(self, task: Task) -> None:
        self._progress.update(
            self._id,
            completed=task.progress,
            description=f"{self._prefix}task {task.id} {task.status.value}",
        )


@contextlib.contextmanager
def _following(console: Console, label: str = "") -> Iterator[_TaskBar | None]:
    """A progress bar that follows one task on a terminal; piped, none (nor its blank line)."""
    if not console.is_terminal:
        yield None
        return
    with _task_progress(console) as progress:
        yield _TaskBar(progress, label)


@click.command()
@click.argument("interface")
@click.argument("profile")
@click.option("--no-wait", is_flag=True, help="Return once the API accepted the change.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds to wait.")
@click.pass_context
def update(
    ctx: click.Context, interface: str, profile: str, no_wait: bool, timeout: float | None
) -> None:
    """Assign speed PROFILE (an id nsp_... or a permalink such as 1gbps) to INTERFACE."""
    settings = settings_of(ctx)
    code = run_command(
        settings, lambda: _update(settings, interface, profile, not no_wait, timeout)
    )
    ctx.exit(code)


async def _update(
    settings: Settings, interface: str, profile: str, wait: bool, timeout: float | None
) -> int:
    out = settings.out
    async with settings.client() as client:
        try:
            if not wait:
                task = await client.update_speed_profile(interface, profile)
                out.print(f"submitted: task {task.id} is {task.status.value}")
                return 0
            with _following(out, interface) as bar:
                task = await client.update_speed_profile(
                    interface, profile, wait=True, on_progress=bar, task_timeout=timeout
                )
        except SpeedProfileAlreadyAssignedError:
            out.print(f"{interface} already has speed profile {profile}: nothing to do")
            return 0
    out.print(f"completed: {interface} now has speed profile {profile} (task {task.id})")
    return 0


@click.command("task")
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Follow the task on a progress bar until it ends.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds to wait.")
@json_option
@click.pass_context
def task_command(
    ctx: click.Context, task_id: str, wait: bool, timeout: float | None, as_json: bool
) -> None:
    """Show a task: status, progress and times (exit 1 if it failed)."""
    settings = settings_of(ctx)
    ctx.exit(run_command(settings, lambda: _show_task(settings, task_id, wait, timeout, as_json)))


async def _show_task(
    settings: Settings, task_id: str, wait: bool, timeout: float | None, as_json: bool = False
) -> int:
    validate_identifier(task_id, what="task id")
    out = settings.out
    async with settings.client() as client:
        task = await client.get_task(task_id)
        if wait and not task.status.is_terminal:
            with _following(out) as bar:
                try:
                    task = await client.wait_for_task(task, on_progress=bar, task_timeout=timeout)
                except TaskFailedError as exc:
                    task = exc.task
    code = EXIT_FAILURE if task.status is TaskStatus.FAILED else 0
    if as_json:
        print_json_lines([task])
        return code
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("id", task.id)
    table.add_row("name", task.name or "-")
    table.add_row("status", task.status.value)
    table.add_row("progress", f"{task.progress}%")
    for label, value in (
        ("created", task.created_at),
        ("started", task.started_at),
        ("finished", task.finished_at),
    ):
        table.add_row(label, value.isoformat() if value is not None else "-")
    out.print(table)
    return code


# --- profiles / interfaces -----------------------------------------------------------------


@click.command()
@click.option(
    "--organization",
    "-o",
    required=True,
    help="Organization id (org_...) or sub-domain.",
)
@json_option
@click.pass_context
def profiles(ctx: click.Context, organization: str, as_json: bool) -> None:
    """List the network speed profiles an organization can use."""
    settings = settings_of(ctx)
    ctx.exit(run_command(settings, lambda: _profiles(settings, organization, as_json)))


def org_lookup(organization: str) -> tuple[str | None, str | None]:
    """``(organization_id, sub_domain)``: an ``org_...`` value is an id, anything else a sub-domain."""
    validate_identifier(organization, what="organization")
    if organization.startswith("org_"):
        return organization, None
    return None, organization


def _speed(mbit: int | None) -> str:
    if mbit is None:
        return "unlimited"
    return f"{mbit / 1000:g} Gbit/s" if mbit >= 1000 else f"{mbit} Mbit/s"


async def _profiles(settings: Settings, organization: str, as_json: bool = False) -> int:
    org_id, sub_domain = org_lookup(organization)
    async with settings.client() as client:
        items = await client.list_speed_profiles(organization_id=org_id, sub_domain=sub_domain)
    if as_json:
        print_json_lines(items)
        return 0
    table = Table(title=f"Network speed profiles of {organization}")
    for column in ("id", "name", "permalink", "upload", "download"):
        table.add_column(column, no_wrap=column in ("id", "permalink"))
    for p in items:
        table.add_row(
            p.id,
            p.name or "-",
            p.permalink or "-",
            _speed(p.upload_speed_in_mbit),
            _speed(p.download_speed_in_mbit),
        )
    settings.out.print(table)
    return 0


@click.command()
@click.option("--vm", required=True, help="Virtual machine id (vm_...) or FQDN.")
@json_option
@click.pass_context
def interfaces(ctx: click.Context, vm: str, as_json: bool) -> None:
    """List the network interfaces of a virtual machine with their speed profiles."""
    settings = settings_of(ctx)
    ctx.exit(run_command(settings, lambda: _interfaces(settings, vm, as_json)))


async def _ready(value: T) -> T:
    return value


async def _interfaces(settings: Settings, vm: str, as_json: bool = False) -> int:
    validate_identifier(vm, what="vm")
    is_id = vm.startswith("vm_")
    async with settings.client() as client:
        items = await client.list_network_interfaces(
            virtual_machine_id=vm if is_id else None, fqdn=None if is_id else vm
        )
        # The list endpoint leaves the speed profile out; a VM has few interfaces, so fetch each.
        items = list(
            await asyncio.gather(
                *(
                    client.get_network_interface(iface.id)
                    if iface.speed_profile is None
                    else _ready(iface)
                    for iface in items
                )
            )
        )
    if as_json:
        print_json_lines(items)
        return 0
    table = Table(title=f"Network interfaces of {vm}")
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("speed profile")
    for iface in items:
        profile = iface.speed_profile
        shown = "-" if profile is None else (profile.permalink or profile.name or profile.id)
        table.add_row(iface.id, iface.name or "-", shown)
    settings.out.print(table)
    return 0


# --- budget --------------------------------------------------------------------------------

BUDGET_PROBE_TASK = "task_katapultasyncbudget"
"""The task ``budget`` asks for: none has this id, so the answer is a small 404 (which carries
the ``X-Ratelimit-*`` headers like any other); the cheapest request that needs no argument."""


@click.command()
@click.option(
    "--window",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="The API's rate-limit window in seconds (a minute on Katapult).",
)
@json_option
@click.pass_context
def budget(ctx: click.Context, window: float, as_json: bool) -> None:
    """Show the token's rate-limit budget: limit, remaining, window, when it refills.

    Sends one request, the cheapest there is (a GET of a task that does not exist), and reads
    what its answer's X-Ratelimit-* headers tell the client's rate limiter.
    """
    settings = settings_of(ctx)
    ctx.exit(run_command(settings, lambda: _budget(settings, window, as_json)))


async def _budget(settings: Settings, window: float, as_json: bool) -> int:
    async with settings.client(rate_limit_window=window) as client:
        with contextlib.suppress(TaskNotFoundError):
            await client.get_task(BUDGET_PROBE_TASK)
        state = client.limiter.snapshot()
    if state.limit is None:
        raise CommandError(
            "the API's answer carried no X-Ratelimit-Permitted header: the limit is unknown"
        )
    refills_in = None if state.refills_in is None else round(state.refills_in, 1)
    if as_json:
        print_json_lines(
            [
                {
                    "limit": state.limit,
                    "window": state.window,
                    "remaining": state.remaining,
                    "in_window": state.in_window,
                    "refills_in": refills_in,
                }
            ]
        )
        return 0
    for label, value in (
        ("limit", f"{state.limit} requests / {state.window:g} s"),
        ("remaining", f"{state.remaining} may start now (this check counted)"),
        ("in window", f"{state.in_window} started in the last {state.window:g} s"),
        ("refills", "-" if refills_in is None else f"in {refills_in:g} s (one more request)"),
    ):
        settings.out.print(f"[bold]{label + ':':<11}[/]{value}", highlight=False)
    return 0
