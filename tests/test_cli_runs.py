"""The ``bulk`` command and its journal's runs: a finished run starts anew, --resume/--fresh."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import Sim, _csv, _jsonl, _start_simulator, _stop, invoke

ONE_GBPS = "nsp_Y8YS65yTivlCAjIY"


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    proc, simulator = _start_simulator("--task-duration", "0.05", "--seed", "5")
    try:
        yield simulator
    finally:
        _stop(proc)


def test_rerunning_a_finished_bulk_after_another_change_updates_again(
    sim: Sim, tmp_path: Path
) -> None:
    ids = sim.add_interfaces(4)
    source = _csv(tmp_path / "ifaces.csv", [f"{i},1gbps" for i in ids])
    first = invoke(sim, "bulk", str(source))
    assert first.exit_code == 0, first.output
    assert "journal" not in first.output.splitlines()[0]  # a new journal: nothing to say

    other = _csv(tmp_path / "other.csv", [f"{i},500mbps" for i in ids[:3]])
    assert invoke(sim, "bulk", str(other)).exit_code == 0
    before = len(sim.patched())

    output = tmp_path / "again.jsonl"
    again = invoke(sim, "bulk", str(source), "--output", str(output))

    assert again.exit_code == 0, again.output
    journal = f"{source}.journal.jsonl"
    assert f"journal {journal}: its last run finished; starting a new run" in again.output
    assert "per journal" not in again.output
    assert re.search(r"completed\s*│\s*3", again.output)
    assert re.search(r"already assigned\s*│\s*1", again.output)
    assert sorted(sim.patched()[before:]) == sorted(ids)
    state = sim.admin("GET", "/state")["interfaces"]
    assert {state[i] for i in ids} == {ONE_GBPS}
    records = _jsonl(output)
    assert sorted(r["outcome"] for r in records) == ["already_assigned"] + ["completed"] * 3
    assert not any(r.get("resumed") for r in records)


def test_resume_and_fresh_make_the_intent_explicit(sim: Sim, tmp_path: Path) -> None:
    ids = sim.add_interfaces(2)
    source = _csv(tmp_path / "ifaces.csv", [f"{i},1gbps" for i in ids])
    journal = Path(f"{source}.journal.jsonl")

    nothing = invoke(sim, "bulk", str(source), "--resume")
    assert nothing.exit_code == 2, nothing.output
    assert "it records no run, so there is nothing to resume" in nothing.output
    assert invoke(sim, "bulk", str(source)).exit_code == 0

    before = len(sim.patched())
    refused = invoke(sim, "bulk", str(source), "--resume")
    assert refused.exit_code == 2, refused.output
    assert "its last run finished, so there is nothing to resume" in refused.output
    assert len(sim.patched()) == before

    # An interrupted run (killed after its last result): resumed by default, not with --fresh.
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-1]))
    resumed = invoke(sim, "bulk", str(source))
    assert resumed.exit_code == 0, resumed.output
    assert "resuming its unfinished run" in resumed.output
    assert len(sim.patched()) == before
    journal.write_text("".join(journal.read_text().splitlines(keepends=True)[:-1]))
    fresh = invoke(sim, "bulk", str(source), "--fresh")
    assert fresh.exit_code == 0, fresh.output
    assert "starting a new run (--fresh: its unfinished run is not resumed)" in fresh.output
    assert len(sim.patched()) == before + 2

    stdin = invoke(sim, "bulk", "-", "--resume", input=f"interface,speed_profile\n{ids[0]},1gbps\n")
    assert stdin.exit_code == 2
    assert "--resume needs a journal" in stdin.output


def test_a_wrong_token_stops_bulk_with_one_message_and_exit_4(sim: Sim, tmp_path: Path) -> None:
    ids = sim.add_interfaces(30)
    source = _csv(tmp_path / "ifaces.csv", [f"{i},1gbps" for i in ids])
    before = len(sim.patched())

    wrong = invoke(
        sim, "bulk", str(source), "--concurrency", "4", env={"KATAPULT_API_TOKEN": "wrong-token"}
    )

    assert wrong.exit_code == 4, wrong.output
    sent = len(sim.patched()) - before
    assert 1 <= sent <= 4
    assert wrong.output.count("invalid_api_token") == 1, wrong.output  # one message, not 30
    assert "stopped: invalid_api_token" in wrong.output
    assert f"{30 - sent} not started" in wrong.output
    assert re.search(rf"skipped\s*│\s*{30 - sent}", wrong.output)
    assert "wrong-token" not in wrong.output

    right = invoke(sim, "bulk", str(source))  # the journal resumes the halted run
    assert right.exit_code == 0, right.output
    assert "resuming its halted run" in right.output
    assert re.search(r"completed\s*│\s*30", right.output)
