"""Run the simulator as a server process: ``python -m katapult_async.testing``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import signal
import sys
from collections.abc import Callable, Sequence

from ._config import ConfigOption, SimulatorConfig, config_options
from ._simulator import KatapultSimulator


async def serve(
    config: SimulatorConfig | None = None,
    *,
    interfaces: int = 0,
    speed_profile: str = "10gbps",
    on_ready: Callable[[KatapultSimulator], object] | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Run a simulator until ``stop`` is set or the process gets SIGINT or SIGTERM.

    Args:
        config: The simulator's options; defaults if None.
        interfaces: Interfaces to create on the default VM before ``on_ready``.
        speed_profile: Their initial speed profile.
        on_ready: Called (and awaited if it returns an awaitable) once the simulator listens.
        stop: Set it to stop the server from elsewhere.
        handle_signals: Stop on SIGINT and SIGTERM (where the event loop supports it).
    """
    stop = asyncio.Event() if stop is None else stop
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    async with KatapultSimulator.from_config(config or SimulatorConfig()) as simulator:
        if interfaces:
            simulator.add_interfaces(interfaces, speed_profile=speed_profile)
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, stop.set)
                except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                    continue
                installed.append(signum)
        try:
            if on_ready is not None:
                result = on_ready(simulator)
                if inspect.isawaitable(result):
                    await result
            await stop.wait()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m katapult_async.testing``.

    One option per :func:`config_options` entry, whose parsed value is stored under the
    :class:`SimulatorConfig` field's name, then ``--interfaces`` and ``--speed-profile``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m katapult_async.testing",
        description=(
            "Run the Katapult API simulator. Prints one JSON line with base_url, admin_url, "
            "token and interfaces once listening, then serves until SIGINT or SIGTERM."
        ),
    )
    for option in config_options():
        _add_option(parser, option)
    add = parser.add_argument
    add("--interfaces", type=int, default=0, help="interfaces to create on the default VM")
    add("--speed-profile", default="10gbps", help="their initial profile (default 10gbps)")
    return parser


def _add_option(parser: argparse.ArgumentParser, option: ConfigOption) -> None:
    if option.is_flag:
        parser.add_argument(
            option.flag,
            dest=option.name,
            action="store_const",
            const=option.flag_value,
            default=option.default,
            help=option.help,
        )
        return
    if option.multiple:  # the parsed list becomes the field's tuple (None: the default)
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=option.type,
            action="append",
            metavar=option.flag.lstrip("-").replace("-", "_").upper(),
            help=option.help,
        )
        return
    help_text = option.help
    if option.default is not None and not option.choices:
        default = option.default
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        help_text += f" (default {shown})"
    parser.add_argument(
        option.flag,
        dest=option.name,
        type=option.type,
        choices=option.choices,
        default=option.default,
        # The flag's name, not the field's: --window takes WINDOW.
        metavar=None if option.choices else option.flag.lstrip("-").replace("-", "_").upper(),
        help=help_text,
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Turn parsed :func:`build_parser` arguments into a :class:`SimulatorConfig`."""
    return SimulatorConfig(
        **{option.name: getattr(args, option.name) for option in config_options()}
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m katapult_async.testing``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    interfaces: int = args.interfaces

    def ready(simulator: KatapultSimulator) -> None:
        line = {
            "base_url": simulator.base_url,
            "admin_url": simulator.admin_url,
            "token": simulator.token,
            "interfaces": interfaces,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    # KeyboardInterrupt still arrives where signal handlers cannot be installed (Windows).
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(config, interfaces=interfaces, speed_profile=args.speed_profile, on_ready=ready)
        )
    return 0
