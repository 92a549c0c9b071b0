"""The ``katapult-async`` command, driven through click's CliRunner and as real processes.

A simulator runs as a ``python -m katapult_async.testing`` process for the whole module (the
commands call ``asyncio.run`` themselves, so it cannot share their event loop); tests create their
own interfaces through its admin endpoints and read its request log from there.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner, Result

from katapult_async.cli import main

UPDATE_PATH_END = "/update_speed_profile"
ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Sim:
    """A simulator process: where it listens, its token, and its admin endpoints."""

    base_url: str
    admin_url: str
    token: str

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.admin_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def add_interfaces(self, count: int) -> list[str]:
        ids: list[str] = self.admin("POST", "/interfaces", {"count": count})["interfaces"]
        return ids

    def requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = self.admin("GET", "/requests")["requests"]
        return requests

    def patched(self, requests: Sequence[dict[str, Any]] | None = None) -> list[str]:
        """Interface ids of the speed-profile PATCHes in the log, in order."""
        return [
            r["body"]["virtual_machine_network_interface"]["id"]
            for r in (self.requests() if requests is None else requests)
            if r["method"] == "PATCH" and r["path"].endswith(UPDATE_PATH_END)
        ]


def _read_line(stream: IO[str], timeout: float = 20.0) -> str:
    """The next line of a child's output; TimeoutError if none comes in time, EOFError if none will.

    A thread does the blocking read: select() on the descriptor would miss lines already pulled
    into the stream's buffer by an earlier readline().
    """
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        raise TimeoutError("the process printed nothing in time")
    if not lines[0]:  # a loop waiting for a line would otherwise spin on an exited process
        raise EOFError("the process closed its output")
    return lines[0]


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _start_simulator(*args: str) -> tuple[subprocess.Popen[str], Sim]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "katapult_async.testing", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(_read_line(proc.stdout))
    except BaseException:
        _stop(proc)
        raise
    return proc, Sim(info["base_url"], info["admin_url"], info["token"])


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    proc, simulator = _start_simulator("--task-duration", "0.2", "--seed", "11")
    try:
        yield simulator
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def failing_sim() -> Iterator[Sim]:
    proc, simulator = _start_simulator("--task-duration", "0.1", "--failure-rate", "1")
    try:
        yield simulator
    finally:
        _stop(proc)


def invoke(
    sim: Sim | None,
    *args: str,
    input: str | None = None,
    env: dict[str, str | None] | None = None,
    token: bool = True,
) -> Result:
    """Run the command in-process; check that no token leaked into its output."""
    environment: dict[str, str | None] = {"KATAPULT_API_TOKEN": None, "KATAPULT_BASE_URL": None}
    argv = list(args)
    if sim is not None:
        argv = ["--base-url", sim.base_url, *argv]
        if token:
            environment["KATAPULT_API_TOKEN"] = sim.token
    environment.update(env or {})
    result = CliRunner().invoke(main, argv, input=input, env=environment)
    if sim is not None:
        assert sim.token not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- packaging -------------------------------------------------------------------------------


def _extra_closure(extra: str) -> set[str]:
    """The requirement names an extra of pyproject.toml installs, following self-references."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras: dict[str, list[str]] = pyproject["project"]["optional-dependencies"]
    names: set[str] = set()
    for requirement in extras[extra]:
        name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()
        if name == "katapult-async":
            for nested in re.findall(r"\[(.*?)\]", requirement)[0].split(","):
                names |= _extra_closure(nested.strip())
        else:
            names.add(name)
    return names


def test_the_docs_extra_installs_what_the_cli_reference_imports() -> None:
    # `pip install -e '.[docs]' && mkdocs build`: mkdocs-click imports katapult_async.cli
    assert _extra_closure("cli") <= _extra_closure("docs")


def test_the_cli_reference_page_shows_the_defaults_click_shows() -> None:
    """docs/cli.md renders every command with mkdocs-click, with the options that page gives."""
    docs = pytest.importorskip("mkdocs_click._docs")
    page = (ROOT / "docs" / "cli.md").read_text()
    options = dict(re.findall(r"^ {4}:(\w+): (.+)$", page, re.MULTILINE))
    text = "\n".join(
        docs.make_command_docs(
            prog_name=options["prog_name"],
            command=main,
            depth=int(options["depth"]),
            style=options["style"],
            list_subcommands=options.get("list_subcommands") == "true",
        )
    )
    assert "UNSET" not in text  # click 8.3's sentinel for "no default"
    assert re.search(
        r"--concurrency INTEGER RANGE\s+Items in progress .*\[default: 16;", text, re.S
    )


def test_code_blocks_on_the_docs_site_wrap_rather_than_run_off_the_page() -> None:
    """A long command line in the CLI page (README's examples) stays visible: the site's CSS wraps
    code blocks."""
    config = (ROOT / "mkdocs.yml").read_text()
    sheets = re.findall(r"^extra_css:\n((?:  - .+\n)+)", config, re.MULTILINE)
    assert sheets, "mkdocs.yml names no extra_css"
    css = "".join((ROOT / "docs" / line.strip()[2:]).read_text() for line in sheets[0].splitlines())
    assert re.search(r"pre > code \{[^}]*white-space: pre-wrap", css)


# --- group options, token, errors ------------------------------------------------------------


def test_help_lists_every_command() -> None:
    result = invoke(None, "--help")
    assert result.exit_code == 0
    for command in ("bulk", "demo", "interfaces", "profiles", "simulate", "task", "update"):
        assert command in result.output


def test_the_group_options_are_listed_once_not_on_every_command(sim: Sim) -> None:
    group = invoke(None, "--help").output
    assert "--token-file" in group
    assert "--base-url" in group
    for command in ("bulk", "update", "profiles", "simulate", "demo"):
        shown = invoke(None, command, "--help").output
        assert "--token-file" not in shown, command
        assert "--base-url" not in shown, command
    # still accepted after a command that talks to the API, and not by the simulator's
    after = ("profiles", "-o", "acme", "--json", "--base-url", sim.base_url)
    result = invoke(None, *after, env={"KATAPULT_API_TOKEN": sim.token})
    assert result.exit_code == 0, result.output
    refused = invoke(None, "simulate", "--base-url", sim.base_url)
    assert refused.exit_code == 2
    assert "No such option" in refused.output


def test_no_token_is_a_one_line_error(sim: Sim) -> None:
    result = invoke(sim, "update", "vmnet_x", "1gbps", token=False)
    assert "KATAPULT_API_TOKEN" in _one_line_error(result)


def test_plain_http_to_a_remote_host_is_refused() -> None:
    result = invoke(
        None,
        "--base-url",
        "http://api.example.com/core/v1",
        "profiles",
        "--organization",
        "acme",
        env={"KATAPULT_API_TOKEN": "a-token-that-never-travels-1234"},
    )
    line = _one_line_error(result)
    assert "refusing plain http://" in line
    assert "a-token-that-never-travels-1234" not in result.output


def test_invalid_token_shows_code_and_request_id_but_not_the_token(sim: Sim) -> None:
    bad = "ksim_not_a_real_token_0123456789"
    result = invoke(sim, "update", "vmnet_x", "1gbps", env={"KATAPULT_API_TOKEN": bad})
    line = _one_line_error(result)
    assert "invalid_api_token" in line
    assert "request id" in line
    assert bad not in result.output


def test_token_file_and_verbose_logging_keep_the_token_secret(sim: Sim, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(sim.token + "\n")
    (iface,) = sim.add_interfaces(1)
    result = invoke(
        sim, "--token-file", str(token_file), "-vv", "update", iface, "500mbps", token=False
    )
    assert result.exit_code == 0, result.output
    assert "completed" in result.output


def test_empty_token_file(sim: Sim, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n")
    result = invoke(sim, "--token-file", str(token_file), "task", "task_x", token=False)
    assert "empty" in _one_line_error(result)


# --- update / task ---------------------------------------------------------------------------


def test_update_waits_then_says_already_assigned(sim: Sim) -> None:
    (iface,) = sim.add_interfaces(1)
    result = invoke(sim, "update", iface, "1gbps")
    assert result.exit_code == 0, result.output
    assert f"completed: {iface} now has speed profile 1gbps" in result.output
    again = invoke(sim, "update", iface, "1gbps")
    assert again.exit_code == 0, again.output
    assert "already has speed profile 1gbps" in again.output


def test_piped_output_never_wraps(sim: Sim) -> None:
    """Not on a terminal (CliRunner, a pipe), a line is never broken inside an id or a command."""
    (iface,) = sim.add_interfaces(1)
    result = invoke(sim, "update", iface, "1gbps")
    assert result.exit_code == 0, result.output
    line = f"completed: {iface} now has speed profile 1gbps (task task_"
    found = re.search(rf"^{re.escape(line)}\w+\)$", result.output, re.MULTILINE)
    assert found is not None, result.output
    assert len(found.group()) > 80  # rich wrapped at 80 columns when not on a terminal


def test_update_and_task_wait_print_no_blank_first_line(sim: Sim) -> None:
    """Piped, there is no progress bar, and nothing of it: the first line is the answer."""
    (iface,) = sim.add_interfaces(1)
    result = invoke(sim, "update", iface, "1gbps")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"completed: {iface} now has"), repr(result.output)
    submitted = invoke(sim, "update", iface, "100mbps", "--no-wait")
    match = re.search(r"task (task_\w+)", submitted.output)
    assert match is not None, submitted.output
    shown = invoke(sim, "task", match.group(1), "--wait")
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("id "), repr(shown.output)


def test_update_errors(sim: Sim) -> None:
    line = _one_line_error(invoke(sim, "update", "vmnet_doesnotexist00", "1gbps"))
    assert "virtual_machine_network_interface_not_found" in line
    assert "request id" in line
    (iface,) = sim.add_interfaces(1)
    line = _one_line_error(invoke(sim, "update", iface, "no-such-profile"))
    assert "network_speed_profile_not_found" in line
    line = _one_line_error(invoke(sim, "update", "vmnet bad", "1gbps"))
    assert "whitespace" in line


def test_update_of_a_failing_task_exits_1(failing_sim: Sim) -> None:
    (iface,) = failing_sim.add_interfaces(1)
    line = _one_line_error(invoke(failing_sim, "update", iface, "1gbps"))
    assert "failed" in line


def test_update_no_wait_then_task(sim: Sim) -> None:
    (iface,) = sim.add_interfaces(1)
    result = invoke(sim, "update", iface, "100mbps", "--no-wait")
    assert result.exit_code == 0, result.output
    match = re.search(r"submitted: task (task_\w+)", result.output)
    assert match is not None, result.output
    task_id = match.group(1)
    shown = invoke(sim, "task", task_id, "--wait")
    assert shown.exit_code == 0, shown.output
    assert re.search(r"status\s+completed", shown.output)
    assert re.search(r"progress\s+100%", shown.output)
    plain = invoke(sim, "task", task_id)
    assert plain.exit_code == 0
    assert task_id in plain.output


def test_task_of_a_failed_task_exits_1(failing_sim: Sim) -> None:
    (iface,) = failing_sim.add_interfaces(1)
    submitted = invoke(failing_sim, "update", iface, "1gbps", "--no-wait")
    match = re.search(r"task (task_\w+)", submitted.output)
    assert match is not None
    result = invoke(failing_sim, "task", match.group(1), "--wait")
    assert result.exit_code == 1
    assert re.search(r"status\s+failed", result.output)


def test_unknown_task(sim: Sim) -> None:
    assert "task_not_found" in _one_line_error(invoke(sim, "task", "task_nothere000000000"))


# --- profiles / interfaces -------------------------------------------------------------------


def test_profiles_by_sub_domain_and_unknown_org_id(sim: Sim) -> None:
    result = invoke(sim, "profiles", "--organization", "acme")
    assert result.exit_code == 0, result.output
    for text in ("nsp_", "1gbps", "1 Gbit/s", "unrestricted"):
        assert text in result.output
    line = _one_line_error(invoke(sim, "profiles", "--organization", "org_nosuchorg0000000"))
    assert "organization_not_found" in line


def test_interfaces_by_fqdn(sim: Sim) -> None:
    result = invoke(sim, "interfaces", "--vm", "sim-web-1.acme.kpult.com")
    assert result.exit_code == 0, result.output
    assert "vmnet_" in result.output
    assert "Public Network on sim-web-1" in result.output
    assert "unrestricted" in result.output  # its private interface's profile
    line = _one_line_error(invoke(sim, "interfaces", "--vm", "vm_nosuchvm000000000"))
    assert "not_found" in line


def test_budget_shows_limit_remaining_window_and_refill() -> None:
    proc, limited = _start_simulator("--rate-limit", "20", "--window", "60")
    try:
        (shown,) = _json_lines(invoke(limited, "budget", "--json"))
        assert (shown["limit"], shown["window"]) == (20, 60.0)
        assert shown["in_window"] >= 1  # this check's own request at least
        assert 0 < shown["remaining"] < 20
        assert 0 < shown["refills_in"] <= 60 * 1.1 + 1  # the window and its time margin
        assert len(limited.requests()) == 1  # one request, however often it is run
        text = invoke(limited, "budget").output
        assert re.search(r"^limit: +20 requests / 60 s$", text, re.MULTILINE), text
        assert re.search(r"^remaining: +\d+ may start now", text, re.MULTILINE), text
        assert re.search(r"^refills: +in [\d.]+ s", text, re.MULTILINE), text
    finally:
        _stop(proc)


def _json_lines(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_json_lines_of_profiles_interfaces_and_task(sim: Sim) -> None:
    profiles = _json_lines(invoke(sim, "profiles", "-o", "acme", "--json"))
    assert len(profiles) > 3
    one_gbps = next(p for p in profiles if p["permalink"] == "1gbps")
    assert one_gbps["id"].startswith("nsp_")
    assert one_gbps["upload_speed_in_mbit"] == 1000
    interfaces = _json_lines(
        invoke(sim, "interfaces", "--vm", "sim-web-1.acme.kpult.com", "--json")
    )
    assert [i["name"] for i in interfaces] == [
        "Public Network on sim-web-1",
        "Private Network on sim-web-1",
    ]
    assert interfaces[1]["speed_profile"]["permalink"] == "unrestricted"
    (iface,) = sim.add_interfaces(1)
    submitted = invoke(sim, "update", iface, "1gbps", "--no-wait")
    match = re.search(r"task (task_\w+)", submitted.output)
    assert match is not None, submitted.output
    (task,) = _json_lines(invoke(sim, "task", match.group(1), "--wait", "--json"))
    assert task["id"] == match.group(1)
    assert (task["status"], task["progress"]) == ("completed", 100)
    assert isinstance(task["finished_at"], int)  # unix seconds, as the API sends them


# --- bulk ------------------------------------------------------------------------------------


def _csv(path: Path, rows: Sequence[str]) -> Path:
    path.write_text("interface,speed_profile\n" + "".join(row + "\n" for row in rows))
    return path


def test_bulk_csv_reports_bad_rows_by_line_and_goes_on(sim: Sim, tmp_path: Path) -> None:
    good = sim.add_interfaces(4)
    source = _csv(
        tmp_path / "updates.csv",
        [
            f"{good[0]},1gbps",  # line 2
            ",1gbps",  # line 3
            f"{good[1]}",  # line 4
            "",  # blank: skipped
            "vmnet_a b,1gbps",  # line 6
            f"{good[2]},1gbps",  # line 7
            "vmnet_unknown0000000,1gbps",  # line 8: the API says not found
            f"{good[0]},1gbps",  # line 9: a duplicate of line 2
            f"{good[3]},nsp_Y8YS65yTivlCAjIY",  # line 10: a profile id
        ],
    )
    output = tmp_path / "results.jsonl"
    result = invoke(sim, "bulk", str(source), "--output", str(output))
    assert result.exit_code == 1, result.output
    text = result.output
    assert "line 3: interface is empty" in text
    assert "line 4: missing column speed_profile" in text
    assert "line 6: interface 'vmnet_a b' contains whitespace" in text
    assert (
        "line 8: vmnet_unknown0000000 → 1gbps: virtual_machine_network_interface_not_found" in text
    )
    assert "line 9: " in text
    assert "duplicates line 2" in text
    assert "Bulk update summary" in text
    assert re.search(r"completed\s*│\s*3", text)
    assert re.search(r"error\s*│\s*5", text)

    records = {r["line"]: r for r in _jsonl(output)}
    assert sorted(records) == [2, 3, 4, 6, 7, 8, 9, 10]
    assert records[2]["outcome"] == "completed"
    assert records[2]["interface_id"] == good[0]
    assert records[2]["task_id"].startswith("task_")
    assert records[10]["speed_profile"] == "nsp_Y8YS65yTivlCAjIY"
    # the journal's record format (event, index, at, error_type, ...) plus the line number
    assert (
        records[3].items()
        >= {
            "event": "result",
            "line": 3,
            "interface_id": "",
            "speed_profile": "1gbps",
            "outcome": "error",
            "task_id": None,
            "error": "line 3: interface is empty",
        }.items()
    )
    assert records[8]["outcome"] == "error"
    assert "request id" in records[8]["error"]

    journal = tmp_path / "updates.csv.journal.jsonl"
    for written in (output, journal):
        assert sim.token not in written.read_text()
    done = {good[0], good[2], good[3]}
    assert {r["interface_id"] for r in _jsonl(journal) if r.get("outcome") == "completed"} == done

    # The same command again: that run finished, so a new run sends the three again and the API
    # says they are already assigned (resuming is for runs that did not finish).
    before = len(sim.patched())
    again = invoke(sim, "bulk", str(source), "--output", str(output))
    assert again.exit_code == 1, again.output
    assert "its last run finished; starting a new run" in again.output
    assert re.search(r"already assigned\s*│\s*3", again.output)
    assert set(sim.patched()[before:]) >= done
    assert len(_jsonl(output)) == 8


def test_bulk_csv_with_a_byte_order_mark_and_undecodable_bytes(sim: Sim, tmp_path: Path) -> None:
    (iface,) = sim.add_interfaces(1)
    source = tmp_path / "excel.csv"
    source.write_bytes(
        b"\xef\xbb\xbfInterface,Speed_Profile\r\n"
        + b"vmnet_\xff\xfe,1gbps\r\n"
        + iface.encode()
        + b",1gbps\r\n"
    )
    result = invoke(sim, "bulk", str(source))
    assert result.exit_code == 1, result.output
    assert "line 2: interface 'vmnet_\\udcff\\udcfe' contains" in result.output
    assert re.search(r"completed\s*│\s*1", result.output)


def test_bulk_jsonl_from_stdin(sim: Sim, tmp_path: Path) -> None:
    ids = sim.add_interfaces(3)
    lines = [
        json.dumps({"interface": ids[0], "speed_profile": "500mbps"}),
        "{not json",
        json.dumps({"interface": ids[1]}),
        json.dumps(["a", "list"]),
        "",
        json.dumps({"interface": ids[2], "speed_profile": "500mbps", "note": "extra keys ok"}),
        json.dumps({"interface": 7, "speed_profile": "500mbps"}),
    ]
    output = tmp_path / "out.jsonl"
    result = invoke(sim, "bulk", "-", "--output", str(output), input="\n".join(lines) + "\n")
    assert result.exit_code == 1, result.output
    assert "line 2: invalid JSON" in result.output
    assert "line 3: speed_profile is missing" in result.output
    assert "line 4: expected a JSON object, got list" in result.output
    assert "line 7: interface must be a string, not int" in result.output
    outcomes = {r["line"]: r["outcome"] for r in _jsonl(output)}
    assert outcomes == {
        1: "completed",
        2: "error",
        3: "error",
        4: "error",
        6: "completed",
        7: "error",
    }
    assert not list(tmp_path.glob("*journal*"))  # stdin: no journal unless asked for


def test_bulk_detects_jsonl_by_content_and_no_wait(sim: Sim, tmp_path: Path) -> None:
    ids = sim.add_interfaces(2)
    source = tmp_path / "updates.txt"
    source.write_text(
        "".join(json.dumps({"interface": i, "speed_profile": "10mbps"}) + "\n" for i in ids)
    )
    journal = tmp_path / "custom.journal"
    result = invoke(sim, "bulk", str(source), "--no-wait", "--journal", str(journal))
    assert result.exit_code == 0, result.output
    assert re.search(r"submitted\s*│\s*2", result.output)
    assert journal.exists()


def test_bulk_dry_run_sends_no_patch(sim: Sim, tmp_path: Path) -> None:
    ids = sim.add_interfaces(3)
    source = _csv(
        tmp_path / "dry.csv",
        [f"{ids[0]},1gbps", f"{ids[1]},42gbps", f"{ids[2]},nsp_Y8YS65yTivlCAjIY", ",1gbps"],
    )
    before = len(sim.requests())
    plain = invoke(sim, "bulk", str(source), "--dry-run", token=False)  # needs no token
    assert plain.exit_code == 1, plain.output
    assert "4 items, 3 valid, 1 invalid" in plain.output
    assert "line 5: interface is empty" in plain.output
    checked = invoke(sim, "bulk", str(source), "--dry-run", "--organization", "acme")
    assert checked.exit_code == 1, checked.output
    assert "line 3: unknown speed profile '42gbps' in acme" in checked.output
    assert "4 items, 2 valid, 2 invalid" in checked.output
    after = sim.requests()[before:]
    assert [r["method"] for r in after] == ["GET"]  # the speed profiles, nothing else
    assert not list(tmp_path.glob("*journal*"))


def test_bulk_failures_are_listed_up_to_twenty(failing_sim: Sim, tmp_path: Path) -> None:
    ids = failing_sim.add_interfaces(23)
    source = _csv(tmp_path / "fail.csv", [f"{i},1gbps" for i in ids])
    result = invoke(failing_sim, "bulk", str(source), "--concurrency", "23")
    assert result.exit_code == 1, result.output
    assert re.search(r"failed\s*│\s*23", result.output)
    assert "Failures (23)" in result.output
    assert "and 3 more" in result.output
    assert (
        len(re.findall(r"line \d+: vmnet_\w+ → 1gbps: task task_\w+ .* failed", result.output))
        == 20
    )


def test_bulk_input_problems_that_stop_before_sending(sim: Sim, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,profile\nvmnet_x,1gbps\n")
    result = invoke(sim, "bulk", str(wrong))
    assert result.exit_code == 2
    assert "must name the columns interface,speed_profile" in result.output
    missing = invoke(sim, "bulk", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2, missing.output  # a usage error, as documented
    assert "cannot open the input file" in missing.output
    assert "No such file" in missing.output
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    nothing = invoke(sim, "bulk", str(empty))
    assert nothing.exit_code == 0, nothing.output
    usage = invoke(sim, "bulk", str(empty), "--organization", "acme")
    assert usage.exit_code == 2


def test_the_live_display_says_what_the_limit_is_per() -> None:
    result = invoke(
        None,
        *("demo", "--count", "3", "--rate-limit", "50", "--window", "1", "--vms", "0"),
        *("--task-duration", "0.05"),
    )
    assert result.exit_code == 0, result.output
    assert "limit 50 / 1 s" in result.output  # the display's last frame, printed once when piped


def test_an_unterminated_csv_quote_is_reported_as_such(tmp_path: Path) -> None:
    source = _csv(
        tmp_path / "quote.csv",
        [
            "vmnet_aaaaaaaaaaaaaaaa,1gbps",
            '"vmnet_bbbbbbbbbbbbbbbb,1gbps',
            "vmnet_cccccccccccccccc,1gbps",
        ],
    )
    result = invoke(None, "bulk", str(source), "--dry-run")
    assert "line 3: unterminated quote" in result.output, result.output
    assert "runs to the end of the file, line 4" in result.output
    assert "missing column" not in result.output
    assert "1 valid, 1 invalid" in result.output


def test_the_documented_shell_completion_works() -> None:
    script = Path(sys.executable).with_name("katapult-async")
    if not script.exists():
        pytest.skip("the katapult-async script is not installed next to this Python")
    page = (ROOT / "docs" / "cli.md").read_text()
    documented = re.findall(r"(_\w+_COMPLETE)=(\w+)_source katapult-async", page)
    assert {shell for _, shell in documented} == {"bash", "zsh", "fish"}
    (variable,) = {name for name, _ in documented}
    env = {**os.environ, variable: "bash_complete", "COMP_WORDS": "katapult-async bul"}
    env["COMP_CWORD"] = "1"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=30, env=env)
    assert done.stdout.split() == ["plain,bulk"], done.stdout + done.stderr


def test_the_summary_names_items_an_earlier_run_did_plainly() -> None:
    from rich.console import Console

    from katapult_async.cli._view import BulkState, print_summary
    from katapult_async.models import Outcome

    state = BulkState(total=3, wait=True)
    for resumed in (True, True, False):
        state.add(Outcome.COMPLETED, resumed=resumed)
    console = Console(width=100, record=True, file=io.StringIO())
    print_summary(console, state)
    assert re.search(r"already done \(earlier run\)\s*│\s*2 │", console.export_text())


def test_simulate_refuses_a_non_loopback_host() -> None:
    result = invoke(None, "simulate", "--host", "8.8.8.8")
    assert result.exit_code == 2
    assert "non-loopback" in result.output


# --- real processes ---------------------------------------------------------------------------


def _cli() -> list[str]:
    """The installed console script next to this Python, else the same entry point via -c."""
    script = Path(sys.executable).with_name("katapult-async")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from katapult_async.cli import main; main()"]


@pytest.mark.slow
def test_demo_process() -> None:
    """The demo as a user runs it; any DeprecationWarning from click, aiohttp, rich, attrs, cattrs or
    backoff while it runs is fatal, so the next deprecation shows in our CI, not in a user's."""
    env = {k: v for k, v in os.environ.items() if k != "KATAPULT_API_TOKEN"}
    env["PYTHONWARNINGS"] = "error::DeprecationWarning"
    done = subprocess.run(
        [
            *_cli(),
            "demo",
            "--count",
            "50",
            "--rate-limit",
            "50",
            "--window",
            "1",
            "--task-duration",
            "0.2",
            "--concurrency",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stderr, done.stderr
    out = " ".join(done.stdout.split())
    assert "Bulk update summary" in out
    assert re.search(r"completed\s*│\s*50", done.stdout)
    assert "physical bound of 2.0s" in out
    assert "50/50 interfaces now have 1gbps" in out


def _journal_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by kill -9
            continue
        if record.get("event") == "result":
            records.append(record)
    return records


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(0.02)


def test_simulate_names_its_organization_and_prints_a_command_to_paste(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("katapult-async")
    if not script.exists():
        pytest.skip("the katapult-async script is not installed next to this Python")
    interfaces_file = tmp_path / "my interfaces.csv"  # a space: the command must quote it
    server = subprocess.Popen(
        [
            *(str(script), "simulate", "--rate-limit", "50", "--window", "1", "--interfaces", "3"),
            *("--task-duration", "0.05", "--interfaces-file", str(interfaces_file)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        info: dict[str, str] = {}
        while "try" not in info:
            key, _, value = _read_line(server.stdout).partition(":")
            info[key.strip()] = value.strip()
        assert re.fullmatch(r"acme \(org_\w+, Acme Ltd, active\)", info["organization"])
        # pasted as is into a shell, with the script on PATH as after `pip install`
        env = {k: v for k, v in os.environ.items() if k != "KATAPULT_API_TOKEN"}
        env["PATH"] = f"{script.parent}{os.pathsep}{env.get('PATH', '')}"
        done = subprocess.run(
            ["sh", "-c", info["try"]], capture_output=True, text=True, timeout=60, env=env
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"completed\s*│\s*3", done.stdout), done.stdout
    finally:
        _stop(server)


@pytest.mark.slow
def test_bulk_interrupted_then_killed_then_resumed(tmp_path: Path) -> None:
    count = 120
    interfaces_file = tmp_path / "ifaces.csv"
    server = subprocess.Popen(
        [
            *_cli(),
            "simulate",
            "--rate-limit",
            "50",
            "--window",
            "1",
            "--interfaces",
            str(count),
            "--task-duration",
            "0.3",
            "--seed",
            "5",
            "--interfaces-file",
            str(interfaces_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    runs: list[subprocess.Popen[bytes]] = []
    try:
        assert server.stdout is not None
        info: dict[str, str] = {}
        while "wrote" not in info:
            key, _, value = _read_line(server.stdout).partition(":")
            info[key.strip()] = value.strip()
        base_url, admin_url = info["base_url"], info["admin_url"]
        simulator = Sim(base_url, admin_url, info["token"])
        ids = [line.split(",")[0] for line in interfaces_file.read_text().splitlines()[1:]]
        assert len(ids) == count

        env = {**os.environ, "KATAPULT_API_TOKEN": simulator.token}
        # The client learns the limit from the headers; the window (60 s on Katapult) is given.
        command = [*_cli(), "--base-url", base_url, "bulk", str(interfaces_file), "--window", "1"]
        journal = tmp_path / "ifaces.csv.journal.jsonl"
        logs: list[Path] = []

        def start() -> subprocess.Popen[bytes]:
            log = tmp_path / f"run{len(logs)}.log"
            logs.append(log)
            with open(log, "wb") as f:
                run = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env)
            runs.append(run)
            return run

        # 1. Ctrl-C: a clean stop, a partial summary, exit 130.
        first = start()
        _wait_for(lambda: len(_journal_results(journal)) >= 5)
        first.send_signal(signal.SIGINT)
        assert first.wait(20) == 130
        text = logs[0].read_text()
        assert "resume with the same command" in text
        assert "interrupted: partial" in text

        # 2. kill -9 in the middle of the resumed run.
        done_before = len(_journal_results(journal))
        second = start()
        _wait_for(lambda: len(_journal_results(journal)) >= done_before + 15)
        second.kill()
        second.wait(10)
        completed_at_kill = {
            r["interface_id"]
            for r in _journal_results(journal)
            if r["outcome"] in ("completed", "already_assigned")
        }
        assert 0 < len(completed_at_kill) < count
        requests_at_kill = len(simulator.requests())

        # 3. The same command again finishes the job.
        third = start()
        assert third.wait(60) == 0, logs[2].read_text()
        assert "already done (earlier run)" in logs[2].read_text()

        requests = simulator.requests()
        assert not set(simulator.patched(requests[requests_at_kill:])) & completed_at_kill

        results = _journal_results(journal)
        finished: dict[str, float] = {}
        for r in results:
            if r["outcome"] in ("completed", "already_assigned"):
                finished.setdefault(r["interface_id"], r["at"])
        assert set(finished) == set(ids)  # every item has a final success line
        for r in requests:
            if r["method"] == "PATCH" and r["path"].endswith(UPDATE_PATH_END):
                iface = r["body"]["virtual_machine_network_interface"]["id"]
                assert r["at_wall"] <= finished[iface] + 0.005, f"{iface} PATCHed after done"

        state = simulator.admin("GET", "/state")
        target = "nsp_Y8YS65yTivlCAjIY"  # 1gbps
        assert all(state["interfaces"][i] == target for i in ids)
        for log in logs:
            assert simulator.token not in log.read_text()
        assert simulator.token not in journal.read_text()
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
        _stop(server)
