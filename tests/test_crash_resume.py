"""Crash and resume: ``kill -9`` a journaled bulk run at seeded points, resume until it is done.

The simulator runs as a ``python -m katapult_async.testing`` process with task failures and a few
injected faults; the bulk run is ``tests/chaos/bulk_worker.py``, killed with SIGKILL once the
journal holds K lines (K drawn from the seed, one kill point after another), then restarted with
the same journal until a run ends by itself. From the journal and the simulator's request log:

* the final run reports exactly one result for every input item;
* no interface whose ``completed``/``already_assigned`` result was journaled is PATCHed after that
  line was written, and the final run sends no PATCH for the items it resumed as done;
* every ``completed``/``failed`` result of the final run names a simulator task of that interface
  that really ended that way, and every item's journaled outcome is consistent with it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "chaos" / "bulk_worker.py"
N_ITEMS = 60
WINDOW = 1.0
KILLS = 3
SEED = 20240611
PATCH_SUFFIX = "/update_speed_profile"
DONE = ("completed", "already_assigned")

pytestmark = pytest.mark.slow


def _read_line(stream: IO[str], timeout: float = 20.0) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        raise TimeoutError("the simulator printed nothing in time")
    return lines[0]


class SimProcess:
    """The simulator process and its admin endpoints."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "katapult_async.testing", *args],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert self.proc.stdout is not None
            info = json.loads(_read_line(self.proc.stdout))
        except BaseException:
            self.stop()
            raise
        self.base_url: str = info["base_url"]
        self.admin_url: str = info["admin_url"]
        self.token: str = info["token"]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.admin_url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def sim() -> Iterator[SimProcess]:
    process = SimProcess(
        "--interfaces",
        str(N_ITEMS),
        "--task-duration",
        "0.3",
        "--task-jitter",
        "0.3",
        "--failure-rate",
        "0.15",
        "--rate-limit",
        "400",
        "--window",
        str(WINDOW),
        "--seed",
        str(SEED),
    )
    try:
        yield process
    finally:
        process.stop()


def journal_lines(path: Path) -> list[dict[str, Any]]:
    """The journal's parseable lines (a line cut short by a kill is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_kill_9_at_random_points_then_resume(sim: SimProcess, tmp_path: Path) -> None:
    started = time.monotonic()
    ids: list[str] = sim.admin("GET", "/interfaces")["interfaces"]
    assert len(ids) == N_ITEMS
    items = tmp_path / "items.txt"
    items.write_text("\n".join(ids) + "\n")
    journal = tmp_path / "run.journal.jsonl"
    for fault in (
        {"kind": "lost_response", "method": "PATCH", "times": -1, "probability": 0.05},
        {"kind": "drop_connection", "times": -1, "probability": 0.02},
        {"kind": "task_not_found", "times": -1, "probability": 0.05},
        {"kind": "service_unavailable", "times": 4},
    ):
        sim.admin("POST", "/faults", fault)
    env = {
        **os.environ,
        "KATAPULT_API_TOKEN": sim.token,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    rng = random.Random(SEED)
    # About two journal lines per item (submitted + result): kill points spread over the run.
    kill_points = sorted(rng.sample(range(4, int(1.6 * N_ITEMS)), KILLS))
    runs: list[dict[str, Any]] = []

    def start(number: int) -> tuple[subprocess.Popen[bytes], Path, float]:
        results = tmp_path / f"results-{number}.jsonl"
        begun = time.time()
        proc = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                sim.base_url,
                *map(str, (items, journal, results, WINDOW)),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return proc, results, begun

    for number, point in enumerate(kill_points):
        proc, results, begun = start(number)
        deadline = time.monotonic() + 20
        while count_lines(journal) < point and proc.poll() is None:
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.005)
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=10)
        runs.append({"killed": killed, "lines": count_lines(journal), "took": time.time() - begun})
        assert killed or proc.returncode == 0, stderr.decode()
        if not killed:  # it finished before the kill point: that run is the final one
            break
    else:
        proc, results, begun = start(len(kill_points))
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr.decode()
        runs.append({"killed": False, "lines": count_lines(journal), "took": time.time() - begun})
    print(runs)
    assert sum(run["killed"] for run in runs) >= 2, runs

    # Let the tasks started by the last run finish, then read the simulator's view.
    time.sleep(0.5)
    log = sim.admin("GET", "/requests")["requests"]
    state = sim.admin("GET", "/state")
    lines = journal_lines(journal)
    final = [json.loads(line) for line in results.read_text().splitlines()]

    # 1. Exactly one result per item in the final run.
    assert sorted(r["index"] for r in final) == list(range(N_ITEMS)), final
    assert {r["interface_id"] for r in final} == set(ids)

    # 2. No PATCH after a journaled completion; none at all for items the final run resumed.
    done_at: dict[str, float] = {}
    for line in lines:
        if line.get("event") == "result" and line.get("outcome") in DONE:
            done_at.setdefault(line["interface_id"], line["at"])
    patches: dict[str, list[float]] = {}
    for request in log:
        if request["method"] == "PATCH" and request["path"].endswith(PATCH_SUFFIX):
            interface_id = request["body"]["virtual_machine_network_interface"]["id"]
            patches.setdefault(interface_id, []).append(request["at_wall"])
    late = {
        interface_id: [round(at - done_at[interface_id], 3) for at in times]
        for interface_id, times in patches.items()
        if interface_id in done_at and any(at > done_at[interface_id] + 0.005 for at in times)
    }
    assert not late, f"PATCHed after their completion was journaled: {late}"
    resumed_done = {r["interface_id"] for r in final if r["resumed"] and r["outcome"] in DONE}
    again = [i for i in resumed_done if any(at >= begun for at in patches.get(i, ()))]
    assert not again, f"the final run PATCHed items it resumed as done: {again}"
    assert resumed_done, "no item was resumed as done: the kills came too late to test resuming"

    # 3. Completed and failed results name tasks that really ended that way.
    tasks = state["tasks"]
    for result in final:
        if result["outcome"] in ("completed", "failed"):
            task = tasks.get(result["task_id"])
            assert task is not None, result
            assert task["interface_id"] == result["interface_id"], (result, task)
            assert task["outcome"] == result["outcome"], (result, task)
        if result["resumed"] and result["outcome"] in DONE:
            journaled = [
                x["outcome"]
                for x in lines
                if x.get("event") == "result" and x["interface_id"] == result["interface_id"]
            ]
            assert result["outcome"] in journaled, (result, journaled)
    assert time.monotonic() - started < 30


def test_kill_9_between_attempt_and_submitted_then_resume_confirms(tmp_path: Path) -> None:
    """The PATCH is applied, its answer is on its way (the simulator's latency), the run is killed
    with only the ``attempt`` line written: the rerun's 422 is confirmed, not reported bare."""
    sim = SimProcess("--interfaces", "1", "--task-duration", "0.2", "--latency", "0.6")
    try:
        (interface,) = sim.admin("GET", "/interfaces")["interfaces"]
        items = tmp_path / "items.txt"
        items.write_text(interface + "\n")
        journal = tmp_path / "run.journal.jsonl"
        env = {
            **os.environ,
            "KATAPULT_API_TOKEN": sim.token,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }

        def start(number: int) -> tuple[subprocess.Popen[bytes], Path]:
            results = tmp_path / f"results-{number}.jsonl"
            args = [sim.base_url, items, journal, results, "60", "1gbps", "0.5"]
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), *map(str, args)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            return proc, results

        proc, _ = start(0)
        deadline = time.monotonic() + 20
        while True:  # the PATCH has been applied and logged; its answer is still held back
            assert time.monotonic() < deadline, "the PATCH never arrived"
            log = sim.admin("GET", "/requests")["requests"]
            if any(r["method"] == "PATCH" for r in log):
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        assert [line["event"] for line in journal_lines(journal)] == ["run", "attempt"]

        proc, results = start(1)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr.decode()
        (final,) = [json.loads(line) for line in results.read_text().splitlines()]
        assert final["outcome"] == "already_assigned"
        assert final["confirmed"] is True
        assert not final["resumed"]
        log = sim.admin("GET", "/requests")["requests"]
        statuses = [r["status"] for r in log if r["method"] == "PATCH"]
        assert statuses == [200, 422, 422]  # the killed run's, the rerun's, the confirmation
        *_, last, end = journal_lines(journal)
        assert end == {**end, "event": "run", "status": "finished"}
        assert last["event"] == "result"
        assert last["confirmed_after_lost_response"] is True
    finally:
        sim.stop()
