"""Select, plan, apply, verify, undo on the command line, against a simulator process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from katapult_async import KatapultClient
from tests.test_cli import Sim, _start_simulator, _stop, invoke

UPDATE_PATH_END = "/update_speed_profile"


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    # a small limit with headers: every request of selection, plan and undo must be paced
    proc, simulator = _start_simulator(
        "--task-duration", "0.1", "--seed", "3", "--rate-limit", "40", "--window", "1"
    )
    try:
        yield simulator
    finally:
        _stop(proc)


def _vm(sim: Sim, name: str, annotations: dict[str, str], profile: str = "10gbps") -> list[str]:
    body = {"name": name, "annotations": annotations, "interfaces": 2, "speed_profile": profile}
    ids: list[str] = sim.admin("POST", "/virtual_machines", body)["interfaces"]
    return ids


def _patched(requests: list[dict[str, Any]]) -> list[str]:
    return [
        r["body"]["virtual_machine_network_interface"]["id"]
        for r in requests
        if r["method"] == "PATCH" and r["path"].endswith(UPDATE_PATH_END)
    ]


def _profiles(sim: Sim) -> dict[str, str]:
    interfaces: dict[str, str] = sim.admin("GET", "/state")["interfaces"]
    return interfaces


def test_malformed_annotation_is_a_usage_error_before_any_request(sim: Sim) -> None:
    before = len(sim.requests())
    for bad in ("role", "=db"):
        result = invoke(sim, "plan", "-o", "acme", "--annotation", bad, "--to", "1gbps")
        assert result.exit_code == 2, result.output
    result = invoke(sim, "bulk", "-o", "acme", "--annotation", "nokey", "--to", "1gbps")
    assert result.exit_code == 2
    assert invoke(sim, "plan", "--to", "1gbps").exit_code == 2  # nothing selected
    assert invoke(sim, "bulk", "-o", "acme").exit_code == 2  # no --to
    assert len(sim.requests()) == before


def test_unknown_organization_and_vm_are_one_line_errors(sim: Sim) -> None:
    result = invoke(sim, "plan", "-o", "nosuch", "--to", "1gbps")
    assert result.exit_code == 1
    assert "organization_not_found" in result.output
    result = invoke(sim, "plan", "--vm", "missing.example.com", "--to", "1gbps")
    assert result.exit_code == 1
    assert "virtual_machine_not_found" in result.output


def test_plan_apply_verify_undo(sim: Sim, tmp_path: Path) -> None:
    db = _vm(sim, "plan-db-1", {"role": "db", "tier": "plan"})
    db += _vm(sim, "plan-db-2", {"role": "db", "tier": "plan"}, profile="1gbps")
    web = _vm(sim, "plan-web-1", {"role": "web", "tier": "plan"})
    start = len(sim.requests())

    # 1. plan: exit 1 (something to change), no PATCH, the JSON Lines records
    plan = tmp_path / "plan.jsonl"
    result = invoke(
        sim,
        "plan",
        "-o",
        "acme",
        "--annotation",
        "role=db",
        "--annotation",
        "tier=plan",
        "--to",
        "1gbps",
        "--output",
        str(plan),
        "--window",
        "1",
    )
    assert result.exit_code == 1, result.output
    assert "2 to change, 2 unchanged, 0 errors" in result.output
    records = [json.loads(line) for line in plan.read_text().splitlines()]
    assert {r["interface_id"] for r in records} == set(db)
    assert {r["action"] for r in records if r["interface_id"] in db[:2]} == {"change"}
    assert all(
        {"interface_id", "virtual_machine", "current_speed_profile", "speed_profile", "action"}
        <= set(r)
        for r in records
    )
    assert not _patched(sim.requests()[start:])

    # 2. apply the plan: only its change items are PATCHed
    mark = len(sim.requests())
    result = invoke(sim, "bulk", str(plan), "--window", "1")
    assert result.exit_code == 0, result.output
    assert sorted(_patched(sim.requests()[mark:])) == sorted(db[:2])
    profiles = _profiles(sim)
    one_g = profiles[db[2]]
    assert all(profiles[i] == one_g for i in db)
    assert profiles[web[0]] != one_g

    # 3. verify: the same plan again has nothing to change (exit 0)
    result = invoke(
        sim, "plan", "-o", "acme", "--annotation", "role=db", "--annotation", "tier=plan",
        "--to", "1gbps", "--window", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "0 to change, 4 unchanged" in result.output

    # 4. another client changes one interface in between: undo skips it as drifted
    async def drift() -> None:
        async with KatapultClient(sim.token, base_url=sim.base_url, rate_limit_window=1) as c:
            await c.update_speed_profile(db[1], "500mbps", wait=True)

    asyncio.run(drift())
    journal = Path(f"{plan}.journal.jsonl")
    mark = len(sim.requests())
    result = invoke(sim, "undo", str(journal), "--window", "1")
    assert result.exit_code == 1, result.output  # one drifted item skipped
    assert "1 drifted" in result.output
    assert _patched(sim.requests()[mark:]) == [db[0]]
    profiles = _profiles(sim)
    assert profiles[db[0]] == profiles[web[0]]  # back to 10gbps
    assert profiles[db[1]] != one_g

    # 5. --force reverts the drifted one; a rerun finds everything in place
    result = invoke(sim, "undo", str(journal), "--force", "--window", "1")
    assert result.exit_code == 0, result.output
    assert _profiles(sim)[db[1]] == profiles[web[0]]
    result = invoke(sim, "undo", str(journal), "--window", "1")
    assert result.exit_code == 0, result.output
    assert "2 already in place" in result.output

    # every request went through the limiter
    assert not [r for r in sim.requests()[start:] if r["status"] == 429]


def test_bulk_by_selection_with_record_previous_then_undo(sim: Sim, tmp_path: Path) -> None:
    ids = _vm(sim, "sel-1", {"group": "sel"}) + _vm(sim, "sel-2", {"group": "sel"})
    journal = tmp_path / "sel.journal.jsonl"
    start = len(sim.requests())
    result = invoke(
        sim, "bulk", "-o", "acme", "--annotation", "group=sel", "--to", "100mbps",
        "--record-previous", "--journal", str(journal), "--window", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(_patched(sim.requests()[start:])) == sorted(ids)
    result = invoke(sim, "undo", str(journal), "--window", "1")
    assert result.exit_code == 0, result.output
    profiles = _profiles(sim)
    assert len({profiles[i] for i in ids}) == 1
    assert Path(f"{journal}.undo.jsonl").exists()
    assert not [r for r in sim.requests()[start:] if r["status"] == 429]


def test_global_options_after_the_subcommand(sim: Sim) -> None:
    result = invoke(None, "profiles", "-o", "acme", "--base-url", sim.base_url,
                    env={"KATAPULT_API_TOKEN": sim.token})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1gbps" in result.output


@pytest.mark.slow
def test_undo_resumes_after_kill_9(sim: Sim, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.test_cli import _journal_results, _wait_for

    ids: list[str] = []
    for n in range(15):
        ids += _vm(sim, f"kill-{n}", {"group": "kill"})
    journal = tmp_path / "kill.journal.jsonl"
    result = invoke(
        sim, "bulk", "-o", "acme", "--annotation", "group=kill", "--to", "500mbps",
        "--record-previous", "--journal", str(journal), "--window", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    before = _profiles(sim)
    assert len({before[i] for i in ids}) == 1

    env = {**os.environ, "KATAPULT_API_TOKEN": sim.token}
    command = [
        sys.executable, "-c", "from katapult_async.cli import main; main()",
        "undo", str(journal), "--base-url", sim.base_url, "--window", "1", "--concurrency", "4",
    ]  # fmt: skip
    undo_journal = Path(f"{journal}.undo.jsonl")
    with open(tmp_path / "run1.log", "wb") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for(lambda: len(_journal_results(undo_journal)) >= 5)
    finally:
        first.kill()
        first.wait(10)
    done = {
        r["interface_id"] for r in _journal_results(undo_journal) if r["outcome"] == "completed"
    }
    assert 0 < len(done) < len(ids)
    mark = len(sim.requests())
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert not set(_patched(sim.requests()[mark:])) & done
    reference = _vm(sim, "kill-ref", {})[0]  # a new interface has 10gbps, as they all had
    after = _profiles(sim)
    assert all(after[i] == after[reference] for i in ids)
