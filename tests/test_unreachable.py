"""An API that cannot be reached: a short first-connection budget, said once, in plain words."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import re
import socket
from pathlib import Path

import pytest

from katapult_async import KatapultClient
from katapult_async._retry import connect_failure_reason
from katapult_async.errors import ConnectionFailedError
from tests.test_cli import _csv, invoke


@pytest.fixture
def closed_url() -> str:
    """The base URL of a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/core/v1"


async def test_a_refused_first_connection_gives_up_after_a_few_tries_and_says_so_once(
    closed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="katapult_async")
    # 50 retries would take many minutes of backoff; an API never reached gets a few seconds.
    async with KatapultClient("token", base_url=closed_url, max_retries=50) as client:
        calls = [client.get_task("task_abc"), client.get_task("task_def")]
        errors = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)
    for error in errors:
        assert isinstance(error, ConnectionFailedError)
        assert str(error) == f"cannot connect to {closed_url}: connection refused"
        assert (error.url, error.reason) == (closed_url, "connection refused")
        assert 1 < error.attempts < 51
        assert error.__context__ is None  # no aiohttp "ssl:default" noise in the chain
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"cannot connect to {closed_url}: connection refused; retrying for a few seconds"
    ]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)"),
            "connection refused",
        ),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "the host name could not be resolved",
        ),
        (OSError(errno.EHOSTUNREACH, "Connect call failed"), "no route to host"),
        (OSError("handshake failed"), "handshake failed"),
    ],
)
def test_connect_failure_reason_in_plain_words(error: OSError, reason: str) -> None:
    assert connect_failure_reason(error) == reason


def test_update_against_a_closed_port_says_it_retries_then_names_url_and_cause(
    closed_url: str,
) -> None:
    result = invoke(
        None,
        "--base-url",
        closed_url,
        "update",
        "vmnet_olNAz8ThH0emHvdr",
        "1gbps",
        env={"KATAPULT_API_TOKEN": "token"},
    )
    assert result.exit_code == 1, result.output
    assert result.output.count("retrying") == 1, result.output
    assert f"Error: cannot connect to {closed_url}: connection refused" in result.output
    assert "ssl:default" not in result.output


def test_bulk_against_a_closed_port_stops_at_once_with_exit_4(
    closed_url: str, tmp_path: Path
) -> None:
    rows = [f"vmnet_olNAz8ThH0emH{n:03d},1gbps" for n in range(40)]
    source = _csv(tmp_path / "ifaces.csv", rows)
    result = invoke(
        None,
        "--base-url",
        closed_url,
        "bulk",
        str(source),
        "--concurrency",
        "4",
        env={"KATAPULT_API_TOKEN": "token"},
    )
    assert result.exit_code == 4, result.output
    assert result.output.count("retrying") == 1, result.output
    assert f"stopped: cannot connect to {closed_url}: connection refused" in result.output
    assert "ssl:default" not in result.output
    assert re.search(r"skipped\s*│\s*3[6-9]", result.output)  # at most 4 were under way
    journal = Path(f"{source}.journal.jsonl").read_text().splitlines()
    assert json.loads(journal[-1])["status"] == "halted"
