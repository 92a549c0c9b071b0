"""``bulk`` with rollout options, against a simulator process: canary, halt, verify, revert."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from rich.console import Console

from katapult_async import CanaryReport, Outcome, SpeedProfileRef, UpdateResult
from katapult_async.cli._app import Settings
from katapult_async.cli._rollout import canary_prompt
from katapult_async.cli._view import BulkState, BulkView
from tests.test_cli import Sim, _start_simulator, _stop, invoke

EXIT_HALTED = 3


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    # tasks to 1gbps fail; a small limit with headers: every request must be paced
    proc, simulator = _start_simulator(
        "--task-duration", "0.1", "--seed", "3", "--rate-limit", "40", "--window", "1",
        "--fail-profile", "1gbps",
    )  # fmt: skip
    try:
        yield simulator
    finally:
        _stop(proc)


def _interfaces(sim: Sim, count: int) -> list[str]:
    ids: list[str] = sim.admin("POST", "/interfaces", {"count": count})["interfaces"]
    return ids


def _profiles(sim: Sim) -> dict[str, str]:
    interfaces: dict[str, str] = sim.admin("GET", "/state")["interfaces"]
    return interfaces


def _csv(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("interface,speed_profile\n" + "".join(f"{i},{p}\n" for i, p in rows))
    return str(path)


def _attempts(journal: Path) -> int:
    """The PATCHes a journal says were sent (its ``attempt`` lines)."""
    if not journal.exists():
        return 0
    return journal.read_text().count('"event": "attempt"')


def _no_429(sim: Sim, start: int) -> None:
    assert not [r for r in sim.requests()[start:] if r["status"] == 429]


def test_a_canary_failure_halts_with_exit_3(sim: Sim, tmp_path: Path) -> None:
    ids = _interfaces(sim, 10)
    start = len(sim.requests())
    file = _csv(tmp_path / "bad.csv", [(i, "1gbps") for i in ids])
    result = invoke(sim, "bulk", file, "--canary", "2", "--window", "1")
    assert result.exit_code == EXIT_HALTED, result.output
    assert len(sim.patched(sim.requests()[start:])) == 2
    assert "halted: canary item" in result.output
    assert "8 not started" in result.output
    assert "skipped" in result.output
    _no_429(sim, start)


def test_a_clean_rollout_with_canary_and_verify_exits_0(sim: Sim, tmp_path: Path) -> None:
    ids = _interfaces(sim, 8)
    start = len(sim.requests())
    file = _csv(tmp_path / "good.csv", [(i, "100mbps") for i in ids])
    output = tmp_path / "out.jsonl"
    result = invoke(
        sim, "bulk", file, "--canary", "2", "--verify", "--max-failures", "10%",
        "--window", "1", "--output", str(output),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Canary: 2 items passed" in result.output  # no terminal: shown, then on
    assert re.search(r"verified \(read back\)\s*│\s*8 │", result.output)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert {line["outcome"] for line in lines} == {"completed"}
    assert [line.get("verified") for line in lines] == [True] * 8
    profiles = _profiles(sim)
    assert len({profiles[i] for i in ids}) == 1
    _no_429(sim, start)


def test_max_failures_halts_then_on_halt_revert_puts_everything_back(
    sim: Sim, tmp_path: Path
) -> None:
    ids = _interfaces(sim, 12)
    before = _profiles(sim)
    start = len(sim.requests())
    rows = [(i, "100mbps") for i in ids[:6]] + [(i, "1gbps") for i in ids[6:]]
    file = _csv(tmp_path / "mixed.csv", rows)
    result = invoke(
        sim, "bulk", file, "--max-failures", "1", "--on-halt", "revert", "--record-previous",
        "--concurrency", "2", "--window", "1",
    )  # fmt: skip
    assert result.exit_code == EXIT_HALTED, result.output
    assert "max_failures=1" in result.output
    assert "reverting what this run changed" in result.output
    assert "reverted (--on-halt revert)" in result.output
    after = _profiles(sim)
    assert {i: after[i] for i in ids} == {i: before[i] for i in ids}  # all back
    patched = sim.patched(sim.requests()[start:])
    assert sum(1 for i in patched if i in ids[6:]) <= 2  # at most max_failures + 1 failed
    assert Path(f"{file}.journal.jsonl.undo.jsonl").exists()
    _no_429(sim, start)
    # the reverted run is closed: the same command starts a new run, it does not resume
    result = invoke(sim, "bulk", file, "--max-failures", "1", "--window", "1", "--concurrency", "2")
    assert "starting a new run" in result.output, result.output


def test_rerunning_a_halted_journal_finishes_the_rest(sim: Sim, tmp_path: Path) -> None:
    ids = _interfaces(sim, 6)
    rows = [(i, "100mbps") for i in ids]
    rows[2] = (ids[2], "1gbps")
    file = _csv(tmp_path / "halt.csv", rows)
    result = invoke(sim, "bulk", file, "--max-failures", "0", "--concurrency", "1", "--window", "1")
    assert result.exit_code == EXIT_HALTED, result.output
    mark = len(sim.requests())
    result = invoke(sim, "bulk", file, "--concurrency", "1", "--window", "1")
    assert result.exit_code == 1, result.output  # the bad item fails again; no halt this time
    assert "resuming its halted run" in result.output
    assert sorted(sim.patched(sim.requests()[mark:])) == sorted(ids[2:])
    profiles = _profiles(sim)
    assert len({profiles[i] for i in ids if i != ids[2]}) == 1


@pytest.mark.parametrize(
    "args",
    [
        ("--max-failures", "lots"),
        ("--max-failures", "120%"),
        ("--on-halt", "revert"),  # a CSV without --record-previous: no previous profiles
        ("--verify", "2"),
        ("--canary", "2", "--no-wait"),
    ],
)
def test_rollout_usage_errors_exit_2_before_any_request(
    sim: Sim, tmp_path: Path, args: tuple[str, ...]
) -> None:
    file = _csv(tmp_path / "u.csv", [("vmnet_abc", "100mbps")])
    before = len(sim.requests())
    result = invoke(sim, "bulk", file, *args)
    assert result.exit_code == 2, result.output
    assert len(sim.requests()) == before


def test_the_demo_ends_with_a_rollout_that_halts_and_reverts() -> None:
    result = invoke(
        None, "demo", "--count", "10", "--vms", "0", "--rate-limit", "50", "--window", "1",
        "--task-duration", "0.2", token=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Canary: 3 items passed" in out
    assert "halted: 3 failures exceed max_failures=2" in out
    assert "rollout: halted, 3 failed (at most 3), 24/24 interfaces on 10gbps again." in out


@pytest.mark.slow
def test_kill_9_during_the_automatic_revert_then_the_same_command_finishes_it(
    sim: Sim, tmp_path: Path
) -> None:
    from tests.test_cli import _journal_results, _wait_for

    ids = _interfaces(sim, 40)
    before = _profiles(sim)
    rows = [(i, "100mbps") for i in ids[:36]] + [(i, "1gbps") for i in ids[36:]]
    file = _csv(tmp_path / "kill.csv", rows)
    env = {**os.environ, "KATAPULT_API_TOKEN": sim.token}
    command = [
        sys.executable, "-c", "from katapult_async.cli import main; main()",
        "bulk", file, "--base-url", sim.base_url, "--window", "1", "--concurrency", "4",
        "--max-failures", "3", "--on-halt", "revert", "--record-previous",
    ]  # fmt: skip
    undo_journal = Path(f"{file}.journal.jsonl.undo.jsonl")
    with open(tmp_path / "run1.log", "wb") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:  # killed once the revert has sent its first PATCHes, while most are still to come
        _wait_for(lambda: _attempts(undo_journal) >= 3, timeout=60)
    finally:
        first.kill()
        first.wait(10)
    reverted = {
        r["interface_id"] for r in _journal_results(undo_journal) if r["outcome"] == "completed"
    }
    killed = _profiles(sim)
    assert [i for i in ids if killed[i] != before[i]], "the kill came after the revert"

    mark = len(sim.requests())
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == EXIT_HALTED, second.stdout + second.stderr
    assert "finishing the revert" in second.stdout
    rerun = sim.requests()[mark:]
    assert not set(sim.patched(rerun)) & reverted  # the reverts done are not sent again
    targets = {
        r["body"]["virtual_machine_network_interface"]["id"]: r["body"]["speed_profile"]
        for r in rerun
        if r["method"] == "PATCH"
    }
    assert targets  # the reverts the first process did not get to
    assert all(profile == {"id": before[i]} for i, profile in targets.items())  # reverts only
    after = _profiles(sim)
    assert {i: after[i] for i in ids} == {i: before[i] for i in ids}
    _no_429(sim, mark)


async def test_the_canary_prompt_asks_on_a_terminal_and_defaults_to_no(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = Console(file=io.StringIO(), force_terminal=True, width=100)
    settings = Settings(base_url="http://127.0.0.1:1", token_file=None, verbose=0, out=out)
    view = BulkView(BulkState(total=3, wait=True))
    asked: list[tuple[str, bool]] = []
    answers = iter([False, True])

    def confirm(question: str, default: bool) -> bool:
        asked.append((question, default))
        return next(answers)

    monkeypatch.setattr(click, "confirm", confirm)
    result = UpdateResult(
        "vmnet_a", SpeedProfileRef(permalink="1gbps"), Outcome.COMPLETED, verified=True
    )
    report = CanaryReport((result,))
    prompt = canary_prompt(settings, view, yes=False)
    assert await prompt(report) is False  # the rollout halts
    assert await prompt(report) is True
    assert asked == [("Go on with the rest?", False)] * 2
    shown = out.file.getvalue()  # type: ignore[attr-defined]
    assert "Canary: 1 items passed" in shown
    assert "vmnet_a" in shown
    assert await canary_prompt(settings, view, yes=True)(report) is True  # --yes: not asked
    assert len(asked) == 2


def test_on_halt_revert_needs_previous_profiles_on_a_selection(sim: Sim) -> None:
    before = len(sim.requests())
    result = invoke(sim, "bulk", "-o", "acme", "--to", "100mbps", "--on-halt", "revert")
    assert result.exit_code == 2, result.output
    assert "--record-previous" in result.output
    assert len(sim.requests()) == before


def test_a_plan_rolls_out_with_a_canary_and_halts(sim: Sim, tmp_path: Path) -> None:
    body = {"name": "roll-db-1", "annotations": {"tier": "roll"}, "interfaces": 3}
    ids = sim.admin("POST", "/virtual_machines", body)["interfaces"]
    plan = tmp_path / "roll.plan.jsonl"
    result = invoke(
        sim, "plan", "-o", "acme", "--annotation", "tier=roll", "--to", "1gbps",
        "--output", str(plan), "--window", "1",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    start = len(sim.requests())
    result = invoke(sim, "bulk", str(plan), "--canary", "1", "--on-halt", "revert", "--window", "1")
    assert result.exit_code == EXIT_HALTED, result.output
    assert len(sim.patched(sim.requests()[start:])) == 1
    assert "0 reverted" in result.output  # the canary's task failed: nothing had changed
    profiles = _profiles(sim)
    assert len({profiles[i] for i in ids}) == 1


def test_a_selection_rolls_out_with_a_threshold_and_reverts(sim: Sim, tmp_path: Path) -> None:
    body = {"name": "sel-roll-1", "annotations": {"tier": "sel-roll"}, "interfaces": 4}
    ids = sim.admin("POST", "/virtual_machines", body)["interfaces"]
    before = _profiles(sim)
    start = len(sim.requests())
    result = invoke(
        sim, "bulk", "-o", "acme", "--annotation", "tier=sel-roll", "--to", "1gbps",
        "--max-failures", "1", "--record-previous", "--on-halt", "revert",
        "--journal", str(tmp_path / "sel.jsonl"), "--window", "1",
    )  # fmt: skip
    assert result.exit_code == EXIT_HALTED, result.output
    assert len(sim.patched(sim.requests()[start:])) == 2  # max_failures + 1, then nothing
    assert "2 not started" in " ".join(result.output.split())
    after = _profiles(sim)
    assert {i: after[i] for i in ids} == {i: before[i] for i in ids}
