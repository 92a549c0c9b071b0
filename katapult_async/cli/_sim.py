"""The commands that run the API simulator: ``simulate`` (serve it) and ``demo`` (bulk-update on it).

Both take their simulator settings from :data:`_OPTIONS`, the one list of those click options;
``demo`` reuses some of them with its own defaults.
"""

from __future__ import annotations

import asyncio
import csv
import json
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import click

from katapult_async.cli._app import EXIT_FAILURE, Settings, run_command, settings_of
from katapult_async.cli._input import INPUT_COLUMNS, Row
from katapult_async.cli._run import BulkOptions, ResultsWriter, counting_session, run_bulk
from katapult_async.cli._view import BulkState, RequestCounts, duration, print_summary
from katapult_async.client import KatapultClient
from katapult_async.models import Outcome

if TYPE_CHECKING:
    from katapult_async.testing import ConfigOption, KatapultSimulator, SimulatorConfig

FC = TypeVar("FC", bound=Callable[..., Any])

DEMO_TARGET_PROFILE = "1gbps"
"""The profile ``demo`` and ``simulate --interfaces-file`` move interfaces to (from 10gbps)."""

DEMO_BAD_PROFILE = "10mbps"
"""The bad target of the demo's rollout: its simulator fails every task to it."""

_OPTIONS: dict[str, dict[str, Any]] = {
    "--host": {"default": "127.0.0.1", "show_default": True, "help": "Loopback address to use."},
    "--port": {"type": click.IntRange(0, 65535), "default": 0, "help": "Port (0: any free one)."},
    "--rate-limit": {"type": click.IntRange(min=1), "help": "Requests per window per token."},
    "--window": {
        "type": click.FloatRange(min=0, min_open=True),
        "default": 60.0,
        "show_default": True,
    },
    "--mode": {
        "type": click.Choice(["fixed", "sliding"]),
        "default": "fixed",
        "show_default": True,
        "help": "Rate-limit windows: aligned fixed windows (as Katapult) or a sliding one.",
    },
    "--interfaces": {"type": click.IntRange(min=0), "default": 0, "help": "Interfaces to create."},
    "--task-duration": {
        "type": click.FloatRange(min=0),
        "default": 2.0,
        "show_default": True,
        "help": "Seconds.",
    },
    "--failure-rate": {
        "type": click.FloatRange(0, 1),
        "default": 0.0,
        "help": "Share of tasks that fail.",
    },
    "--seed": {"type": int, "help": "Seed for every random choice (and the token)."},
    "--interfaces-file": {
        "type": click.Path(dir_okay=False, path_type=Path),
        "help": f"Write the created interfaces as a bulk CSV (target profile {DEMO_TARGET_PROFILE}).",
    },
}
"""Every option of ``simulate``, in the order ``--help`` lists them, with its defaults."""


def _option(flag: str, **overrides: Any) -> Callable[[FC], FC]:
    """The click option ``flag`` of :data:`_OPTIONS`, with ``overrides`` (another default, help)."""
    return click.option(flag, **{**_OPTIONS[flag], **overrides})


_CLI_ONLY = ("--interfaces", "--interfaces-file")
"""The ``simulate`` options that are not simulator settings (the rest come from the simulator)."""


def _config_option(option: ConfigOption) -> Callable[[FC], FC]:
    """The click option of one of the simulator's :func:`~katapult_async.testing.config_options`."""
    kwargs: dict[str, Any]
    if option.multiple:
        kwargs = {"type": option.type, "multiple": True}
    elif option.is_flag:
        kwargs = {"flag_value": option.flag_value, "default": option.default}
    elif option.choices:
        kwargs = {"type": click.Choice(option.choices), "default": option.default}
    else:
        kwargs = {"type": option.type, "default": option.default}
    return click.option(
        option.flag, option.name, help=option.help, show_default=not option.is_flag, **kwargs
    )


def _simulate_options(command: FC) -> FC:
    """Add the simulator's own options (listed once, by the simulator), then ``simulate``'s."""
    from katapult_async.testing import config_options

    extra = [_option(flag) for flag in _CLI_ONLY] + [
        click.option(
            "--vms",
            type=click.IntRange(min=0),
            default=0,
            help="VMs to create (2 interfaces each).",
        ),
        click.option(
            "--vm-annotation",
            "vm_annotations",
            metavar="KEY=VALUE",
            multiple=True,
            help="An annotation of every VM --vms creates (repeat for more).",
        ),
    ]
    for decorator in reversed([_config_option(o) for o in config_options()] + extra):
        command = decorator(command)
    return command


def _annotation_pairs(values: tuple[str, ...]) -> dict[str, str]:
    from katapult_async.cli._select import parse_annotation

    return dict(parse_annotation(value) for value in values)


def _simulator_config(**options: Any) -> SimulatorConfig:
    # The simulator (aiohttp's server side) is imported only by the commands that run it.
    from katapult_async.testing import SimulatorConfig

    try:
        return SimulatorConfig(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _try_command(simulator: KatapultSimulator, interfaces_file: Path | None, window: float) -> str:
    """A command to paste as is into a shell: ``bulk`` of the interfaces file, else ``profiles``."""
    command = [
        f"KATAPULT_API_TOKEN={simulator.token}",
        "katapult-async",
        *("--base-url", simulator.base_url),
    ]
    if interfaces_file is None:
        command += ["profiles", "-o", simulator.organization.sub_domain]
    else:
        command += ["bulk", str(interfaces_file)]
        if window != 60:  # the client's default window is the live API's
            command += ["--window", f"{window:g}"]
    return shlex.join(command)


@click.command()
@_simulate_options
@click.pass_context
def simulate(
    ctx: click.Context,
    /,
    interfaces: int,
    interfaces_file: Path | None,
    vms: int,
    vm_annotations: tuple[str, ...],
    **simulator_options: Any,
) -> None:
    """Run the Katapult API simulator on loopback until Ctrl-C.

    Prints its base URL and a token for it (a fake local one), e.g. to try `bulk` safely.
    """
    settings = settings_of(ctx)
    config = _simulator_config(**simulator_options)
    rate_limit, window, mode = config.rate_limit, config.rate_limit_window, config.rate_limit_mode
    annotations = _annotation_pairs(vm_annotations)

    def ready(simulator: KatapultSimulator) -> None:
        ids = simulator.add_interfaces(interfaces) if interfaces else []
        for _ in range(vms):
            vm = simulator.add_virtual_machine(annotations=annotations)
            simulator.add_interfaces(2, vm_id=vm.id)

        def show(label: str, value: object) -> None:
            click.echo(f"{label + ':':<14}{value}")

        if vms:
            shown = ",".join(f"{k}={v}" for k, v in annotations.items()) or "no annotations"
            show("vms", f"{vms} with {shown}, 2 interfaces each")
        limit = f"{rate_limit} requests / {window:g}s ({mode})" if rate_limit else "none"
        for label, value in (
            ("base_url", simulator.base_url),
            ("token", simulator.token),
            ("admin_url", simulator.admin_url),
            ("rate_limit", limit),
            ("interfaces", f"{len(ids)} on {simulator.default_virtual_machine.id}"),
        ):
            show(label, value)
        for org in simulator.organizations.values():
            show("organization", f"{org.sub_domain} ({org.id}, {org.name}, {org.state})")
        if interfaces_file is not None:
            with open(interfaces_file, "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(INPUT_COLUMNS)
                writer.writerows((iface, DEMO_TARGET_PROFILE) for iface in ids)
            show("wrote", interfaces_file)
        show("try", _try_command(simulator, interfaces_file, window))
        click.echo("serving until Ctrl-C")
        sys.stdout.flush()

    from katapult_async.testing import serve

    try:
        asyncio.run(serve(config, on_ready=ready))
    except KeyboardInterrupt:  # where serve could not install its signal handlers
        pass
    except OSError as exc:
        raise settings.command_error(exc) from None


@click.command()
@click.option("--count", type=click.IntRange(min=1), default=500, show_default=True)
@_option(
    "--rate-limit",
    default=100,
    show_default=True,
    help="The simulator's limit per window (the client learns it from the response headers).",
)
@_option("--window", default=2.0)
@click.option("--concurrency", type=click.IntRange(min=1), default=64, show_default=True)
@_option("--task-duration", default=1.0)
@click.option(
    "--vms",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Annotated VMs (2 interfaces each) for the plan, apply, verify, undo loop (0: skip it).",
)
@click.option(
    "--vm-annotation",
    "vm_annotations",
    metavar="KEY=VALUE",
    multiple=True,
    help="The annotations of those VMs, which the loop selects by [default: role=db].",
)
@click.option(
    "--rollout/--no-rollout",
    default=True,
    show_default=True,
    help=f"End with a rollout to a bad profile ({DEMO_BAD_PROFILE}, whose tasks fail): the canary "
    "passes, the run halts at its threshold and reverts what it changed.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    count: int,
    rate_limit: int,
    window: float,
    concurrency: int,
    task_duration: float,
    vms: int,
    vm_annotations: tuple[str, ...],
    rollout: bool,
) -> None:
    """Bulk-update COUNT interfaces on a built-in simulator, paced to its rate limit.

    No token or network needed. Each item costs at least two requests (the PATCH and one poll of
    its task), so the run cannot beat 2 x COUNT / (RATE_LIMIT / WINDOW) seconds; the summary says
    how close it came. Then the plan, apply, verify, undo loop on annotated VMs, and a rollout
    that halts and reverts.
    """
    settings = settings_of(ctx)
    state = BulkState(total=count, wait=True)
    options = BulkOptions(
        concurrency=concurrency,
        rate_limit=None,
        window=window,
        journal=None,
        wait=True,
        timeout=None,
    )
    config = _simulator_config(
        rate_limit=rate_limit,
        rate_limit_window=window,
        task_duration=task_duration,
        task_duration_jitter=0.2,
        seed=0,
        fail_profiles=(DEMO_BAD_PROFILE,),
    )

    annotations = _annotation_pairs(vm_annotations or ("role=db",))

    def interrupted() -> None:
        print_summary(settings.out, state, interrupted=True)

    ctx.exit(
        run_command(
            settings,
            lambda: _demo(settings, config, count, options, state, vms, annotations, rollout),
            on_interrupt=interrupted,
        )
    )


async def _demo(
    settings: Settings,
    config: SimulatorConfig,
    count: int,
    options: BulkOptions,
    state: BulkState,
    vms: int = 0,
    annotations: dict[str, str] | None = None,
    rollout: bool = False,
) -> int:
    from katapult_async.testing import KatapultSimulator

    out = settings.out
    limit, window = config.rate_limit, config.rate_limit_window
    assert limit is not None
    async with KatapultSimulator.from_config(config) as simulator:
        ids = simulator.add_interfaces(count, speed_profile="10gbps")
        out.print(
            f"Simulator at {simulator.base_url}: rate limit {limit} requests per {window:g}s, "
            f"tasks take ~{config.task_duration:g}s.\n"
            f"Updating {count} interfaces from 10gbps to {DEMO_TARGET_PROFILE} with concurrency "
            f"{options.concurrency}; the client is not told the limit and learns it from the "
            "response headers.",
            highlight=False,
        )
        rows = (Row(n, iface, DEMO_TARGET_PROFILE) for n, iface in enumerate(ids, 1))
        writer = ResultsWriter(None, settings)
        # The window is the API's (60 s on Katapult), so it is given; the limit is learnt.
        async with (
            counting_session(state.requests) as session,
            KatapultClient(
                simulator.token,
                base_url=simulator.base_url,
                rate_limit_window=window,
                session=session,
            ) as client,
        ):
            await run_bulk(settings, client, rows, options, state, writer)
        target = simulator.profile_by_permalink(DEMO_TARGET_PROFILE).id
        interfaces = simulator.interfaces
        moved = sum(1 for iface in ids if interfaces[iface].speed_profile_id == target)
        print_summary(out, state)
        bound = 2 * count / (limit / window)
        elapsed = state.elapsed
        out.print(
            f"Wall time {duration(elapsed)} against a physical bound of {duration(bound)} "
            f"(2 requests x {count} items at {limit / window:g} requests/s): "
            f"{elapsed / bound:.2f}x the bound; 429 responses: {state.requests.rate_limited}. "
            f"{moved}/{count} interfaces now have {DEMO_TARGET_PROFILE}.",
            highlight=False,
        )
        loop_ok = True
        if vms:
            for _ in range(vms):
                vm = simulator.add_virtual_machine(annotations=annotations or {})
                simulator.add_interfaces(2, vm_id=vm.id)
            loop_ok = await _demo_loop(settings, simulator, options, annotations or {})
        rollout_ok = await _demo_rollout(settings, simulator, options) if rollout else True
    failed = state.any_failed or moved != count
    return EXIT_FAILURE if failed or not loop_ok or not rollout_ok else 0


async def _demo_rollout(
    settings: Settings, simulator: KatapultSimulator, options: BulkOptions
) -> bool:
    """A rollout that goes wrong: a third of 24 interfaces to a good profile (the canary among
    them), the rest to :data:`DEMO_BAD_PROFILE`; it halts at ``--max-failures 2`` and
    ``--on-halt revert`` puts back what it changed. True when it halted and every interface is
    back on its profile."""
    import tempfile

    from katapult_async.cli._rollout import RolloutFlags, halted_exit
    from katapult_async.cli._undo import revert_after_halt

    out = settings.out
    vm = simulator.add_virtual_machine()
    ids = simulator.add_interfaces(24, vm_id=vm.id, speed_profile="10gbps")
    targets = ["500mbps"] * 8 + [DEMO_BAD_PROFILE] * 16
    out.print(
        f"\nA rollout that goes wrong: {len(ids)} interfaces, the first 8 to 500mbps, the rest "
        f"to {DEMO_BAD_PROFILE}, whose tasks fail here (katapult-async bulk ... --canary 3 "
        "--max-failures 2 --verify 0.5 --on-halt revert --record-previous --yes).",
        highlight=False,
    )
    flags = RolloutFlags(canary=3, max_failures=(2, None), verify=0.5, on_halt="revert", yes=True)
    state = BulkState(total=len(ids), wait=True, rollout=True)
    with tempfile.TemporaryDirectory() as tmp:
        rollout_options = attrs.evolve(
            options,
            concurrency=8,
            journal=Path(tmp) / "rollout.jsonl",
            record_previous=True,
            rollout=flags,
        )
        rows = [
            Row(n, iface, target)
            for n, (iface, target) in enumerate(zip(ids, targets, strict=True), 1)
        ]
        async with (
            counting_session(state.requests) as session,
            KatapultClient(
                simulator.token,
                base_url=simulator.base_url,
                rate_limit_window=simulator.config.rate_limit_window,
                session=session,
            ) as client,
        ):
            writer = ResultsWriter(None, settings)
            await run_bulk(settings, client, rows, rollout_options, state, writer)
            await revert_after_halt(settings, client, rollout_options, state)
        print_summary(out, state)
        halted = halted_exit(settings, state) is not None
    ten_g = simulator.profile_by_permalink("10gbps").id
    simulator.settle()
    back = sum(1 for i in ids if simulator.interfaces[i].speed_profile_id == ten_g)
    out.print(
        f"rollout: {'halted' if halted else 'did not halt'}, "
        f"{state.counts[Outcome.FAILED]} failed (at most 3), {back}/{len(ids)} interfaces on "
        "10gbps again.",
        highlight=False,
    )
    return halted and back == len(ids)


async def _demo_loop(
    settings: Settings,
    simulator: KatapultSimulator,
    options: BulkOptions,
    annotations: dict[str, str],
) -> bool:
    """Plan, apply, verify and undo on the annotated VMs; True when each step did its part."""
    import tempfile

    from katapult_async.cli._plan import CHANGE, PlanFile, _print_plan, plan_items
    from katapult_async.cli._select import Selection
    from katapult_async.cli._undo import revert

    out = settings.out
    selection = Selection(
        simulator.organization.sub_domain, tuple(annotations.items()), (), "100mbps"
    )
    out.print(
        f"\nThe operator's loop on the VMs of {selection.describe()}: plan, apply, verify, undo.",
        highlight=False,
    )
    window = simulator.config.rate_limit_window
    writer = ResultsWriter(None, settings)
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = f"{tmp}/demo.plan.jsonl"
        counts = RequestCounts()  # every request of the loop; each phase shows its own share
        async with (
            counting_session(counts) as session,
            KatapultClient(
                simulator.token,
                base_url=simulator.base_url,
                rate_limit_window=window,
                session=session,
            ) as client,
        ):

            async def run_phase(phase: Awaitable[object], state: BulkState) -> None:
                before = attrs.evolve(counts)
                await phase
                state.requests = RequestCounts(
                    counts.requests - before.requests, counts.rate_limited - before.rate_limited
                )

            async def plan(write: bool) -> dict[str, int]:
                counts = {"change": 0, "unchanged": 0, "error": 0}
                items = []
                with open(plan_path if write else f"{tmp}/verify.jsonl", "w") as f:  # noqa: ASYNC230
                    async for item in plan_items(settings, client, selection.rows(client), 8):
                        counts[item.action] += 1
                        items.append(item)
                        f.write(json.dumps(item.record()) + "\n")
                _print_plan(settings, items, counts)
                return counts

            out.print("[bold]1. plan[/] (nothing is changed)")
            first = await plan(True)
            out.print("[bold]2. apply the plan[/] (katapult-async bulk PLAN)")
            journal = Path(f"{plan_path}.journal.jsonl")
            apply_options = attrs.evolve(options, journal=journal, concurrency=8)
            applied = BulkState(total=first[CHANGE], wait=True)
            rows = PlanFile(plan_path).rows()
            await run_phase(
                run_bulk(settings, client, rows, apply_options, applied, writer), applied
            )
            print_summary(out, applied)
            out.print("[bold]3. verify[/] (the same plan again: nothing to change)")
            second = await plan(False)
            out.print("[bold]4. undo[/] (katapult-async undo JOURNAL)")
            undone = BulkState(total=first[CHANGE], wait=True)
            undo_options = attrs.evolve(apply_options, journal=Path(f"{journal}.undo.jsonl"))
            reverting = revert(settings, client, journal, undo_options, undone, writer, False)
            await run_phase(reverting, undone)
            print_summary(out, undone)
    reverted = undone.counts[Outcome.COMPLETED]
    out.print(
        f"loop: {first[CHANGE]} to change, {applied.counts[Outcome.COMPLETED]} applied, "
        f"{second[CHANGE]} left to change after applying, {reverted} reverted.",
        highlight=False,
    )
    return (
        second[CHANGE] == 0
        and second["error"] == 0
        and not applied.any_failed
        and reverted == first[CHANGE]
    )
