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

from ._config import SimulatorConfig
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
    """The command line of ``python -m katapult_async.testing``."""
    parser = argparse.ArgumentParser(
        prog="python -m katapult_async.testing",
        description=(
            "Run the Katapult API simulator. Prints one JSON line with base_url, admin_url, "
            "token and interfaces once listening, then serves until SIGINT or SIGTERM."
        ),
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    add("--allow-non-loopback", action="store_true", help="permit a non-loopback --host")
    add("--token", help="the default API token (default: generated)")
    add("--rate-limit", type=int, help="requests per window per token (default: unlimited)")
    add("--window", type=float, default=60.0, help="rate-limit window in seconds (default 60)")
    add("--mode", choices=("fixed", "sliding"), default="fixed", help="rate-limit windows")
    add("--no-rate-headers", action="store_true", help="omit the X-Ratelimit-* headers")
    add("--interfaces", type=int, default=0, help="interfaces to create on the default VM")
    add("--speed-profile", default="10gbps", help="their initial profile (default 10gbps)")
    add("--task-duration", type=float, default=2.0, help="seconds per task (default 2)")
    add("--task-jitter", type=float, default=0.0, help="task duration jitter fraction")
    add("--task-start-delay", type=float, help="seconds pending (default: duration / 4)")
    add("--failure-rate", type=float, default=0.0, help="share of tasks that fail")
    add("--never-finish-rate", type=float, default=0.0, help="share of tasks that never end")
    add("--latency", type=float, default=0.0, help="seconds added before every response")
    add("--seed", type=int, help="seed for every random choice")
    add("--no-record", action="store_true", help="do not keep a request log")
    add("--max-recorded", type=int, default=50_000, help="request log size (default 50000)")
    add("--flat-errors", action="store_true", help="flat error bodies, as in the docs")
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Turn parsed :func:`build_parser` arguments into a :class:`SimulatorConfig`."""
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        allow_non_loopback=args.allow_non_loopback,
        token=args.token,
        rate_limit=args.rate_limit,
        rate_limit_window=args.window,
        rate_limit_mode=args.mode,
        rate_limit_headers=not args.no_rate_headers,
        error_envelope="flat" if args.flat_errors else "wrapped",
        task_duration=args.task_duration,
        task_duration_jitter=args.task_jitter,
        task_start_delay=args.task_start_delay,
        task_failure_rate=args.failure_rate,
        task_never_finish_rate=args.never_finish_rate,
        seed=args.seed,
        latency=args.latency,
        record_requests=not args.no_record,
        max_recorded_requests=args.max_recorded,
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
