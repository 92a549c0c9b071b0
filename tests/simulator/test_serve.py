"""Running the simulator as a server: ``python -m katapult_async.testing`` and ``serve``."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import katapult_async.testing as testing
from katapult_async.testing import KatapultSimulator, SimulatorConfig

from .helpers import UPDATE_UNDERSCORE, update_body

CONFIG_FLAGS = [
    "--host",
    "--port",
    "--allow-non-loopback",
    "--token",
    "--rate-limit",
    "--window",
    "--mode",
    "--no-rate-headers",
    "--flat-errors",
    "--task-duration",
    "--task-jitter",
    "--task-start-delay",
    "--failure-rate",
    "--never-finish-rate",
    "--no-change-rate",
    "--fail-profile",
    "--task-progress",
    "--seed",
    "--latency",
    "--no-record",
    "--max-recorded",
]


def test_config_options_name_fields_and_keep_their_defaults() -> None:
    options = testing.config_options()
    assert [option.flag for option in options] == CONFIG_FLAGS
    defaults = SimulatorConfig()
    for option in options:
        assert option.default == getattr(defaults, option.name)
        assert option.help
        assert option.is_flag == (option.flag_value is not None)
    by_name = {option.name: option for option in options}
    assert by_name["rate_limit_mode"].choices == ("fixed", "sliding")
    assert by_name["task_progress"].choices == ("rising", "live")
    assert (by_name["task_progress"].type, by_name["task_progress"].is_flag) == (str, False)
    assert by_name["rate_limit"].type is int
    assert by_name["rate_limit_window"].type is float
    assert (by_name["rate_limit_headers"].is_flag, by_name["rate_limit_headers"].flag_value) == (
        True,
        False,
    )
    assert by_name["error_envelope"].flag_value == "flat"
    assert (by_name["fail_profiles"].multiple, by_name["fail_profiles"].type) == (True, str)


def test_command_line_sets_every_option() -> None:
    parser = testing.build_parser()
    assert testing.config_from_args(parser.parse_args([])) == SimulatorConfig()
    args = parser.parse_args(
        shlex.split(
            "--host ::1 --port 8080 --allow-non-loopback --token t --rate-limit 5 --window 2.5 "
            "--mode sliding --no-rate-headers --flat-errors --task-duration 1 --task-jitter 0.1 "
            "--task-start-delay 0.2 --failure-rate 0.3 --never-finish-rate 0.2 "
            "--no-change-rate 0.2 --fail-profile 1gbps --fail-profile nsp_OJRYLIcdw01g7apm "
            "--task-progress live --seed 7 --latency 0.01 --no-record --max-recorded 9 "
            "--interfaces 3 --speed-profile 1gbps"
        )
    )
    assert testing.config_from_args(args) == SimulatorConfig(
        host="::1",
        port=8080,
        allow_non_loopback=True,
        token="t",
        rate_limit=5,
        rate_limit_window=2.5,
        rate_limit_mode="sliding",
        rate_limit_headers=False,
        error_envelope="flat",
        task_duration=1.0,
        task_duration_jitter=0.1,
        task_start_delay=0.2,
        task_failure_rate=0.3,
        task_never_finish_rate=0.2,
        task_no_change_rate=0.2,
        fail_profiles=("1gbps", "nsp_OJRYLIcdw01g7apm"),
        task_progress="live",
        seed=7,
        latency=0.01,
        record_requests=False,
        max_recorded_requests=9,
    )
    assert (args.interfaces, args.speed_profile) == (3, "1gbps")
    help_text = parser.format_help()
    assert all(flag in help_text for flag in [*CONFIG_FLAGS, "--interfaces", "--speed-profile"])
    assert "--task-progress {rising,live}" in help_text


def test_command_line_task_progress() -> None:
    parser = testing.build_parser()
    assert testing.config_from_args(parser.parse_args([])).task_progress == "rising"
    args = parser.parse_args(["--task-progress", "live"])
    assert testing.config_from_args(args).task_progress == "live"
    with pytest.raises(SystemExit):
        parser.parse_args(["--task-progress", "flat"])


def _child_process_options() -> dict[str, Any]:
    # Run the child from the directory the imported package lives in, so it imports the same code.
    root = Path(testing.__file__).parent.parent.parent
    path = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"cwd": root, "env": {**os.environ, "PYTHONPATH": os.pathsep.join(path)}}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM")
async def test_server_process(session: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "katapult_async.testing",
        "--interfaces",
        "3",
        "--rate-limit",
        "50",
        "--task-duration",
        "0",
        **_child_process_options(),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 15)
        ready = json.loads(line)
        assert set(ready) == {"base_url", "admin_url", "token", "interfaces"}
        assert ready["interfaces"] == 3
        assert ready["base_url"].startswith("http://127.0.0.1:")
        async with session.get(ready["admin_url"] + "/interfaces") as response:
            ids = (await response.json())["interfaces"]
        assert len(ids) == 3
        async with session.patch(
            ready["base_url"] + UPDATE_UNDERSCORE,
            json=update_body(ids[0]),
            headers={"Authorization": f"Bearer {ready['token']}"},
        ) as response:
            assert response.status == 200
            assert response.headers["X-Ratelimit-Remaining"] == "49"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert await process.stdout.read() == b""
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
async def test_server_process_refuses_public_hosts() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "katapult_async.testing",
        "--host",
        "0.0.0.0",
        **_child_process_options(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 2
    assert stdout == b""
    assert b"non-loopback" in stderr


async def test_serve_in_process() -> None:
    stop = asyncio.Event()
    seen: list[str] = []

    async def ready(simulator: KatapultSimulator) -> None:
        seen.append(simulator.base_url)
        async with (
            aiohttp.ClientSession() as client,
            client.get(simulator.admin_url + "/interfaces") as response,
        ):
            assert len((await response.json())["interfaces"]) == 2
        stop.set()

    await asyncio.wait_for(
        testing.serve(
            SimulatorConfig(), interfaces=2, on_ready=ready, stop=stop, handle_signals=False
        ),
        10,
    )
    assert len(seen) == 1
