"""One journal, one run: the journal's lock, and ``journal_fsync`` (issue 12)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import katapult_async
from katapult_async.bulk import JournalInUseError, bulk_update
from katapult_async.bulk._journal import _Journal
from katapult_async.client import KatapultClient
from katapult_async.errors import KatapultError
from katapult_async.models import Outcome
from katapult_async.testing import KatapultSimulator

from .helpers import collect, make_client


def test_journal_in_use_error() -> None:
    error = JournalInUseError("/tmp/x.jsonl")
    assert isinstance(error, KatapultError)
    assert error.path == "/tmp/x.jsonl"
    assert "/tmp/x.jsonl" in str(error)
    assert "in use" in str(error)
    assert katapult_async.JournalInUseError is JournalInUseError


async def test_a_second_run_on_a_locked_journal_fails_at_once_and_sends_nothing(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path
) -> None:
    first_ids = sim.add_interfaces(3)
    second_ids = sim.add_interfaces(3)
    journal = tmp_path / "bulk.journal.jsonl"
    run = bulk_update(client, [(i, "1gbps") for i in first_ids], concurrency=1, journal=journal)
    async with contextlib.aclosing(run):
        first = await run.__anext__()  # the first run holds the journal
        assert first.outcome is Outcome.COMPLETED
        async with make_client(sim) as other:
            second = bulk_update(other, [(i, "1gbps") for i in second_ids], journal=journal)
            with pytest.raises(JournalInUseError) as caught:
                await collect(second)
        assert caught.value.path == str(journal)
        assert str(journal) in str(caught.value)
        sent = {
            (r.body or {}).get("virtual_machine_network_interface", {}).get("id")
            for r in sim.requests
            if r.method == "PATCH"
        }
        assert sent.isdisjoint(second_ids)
        rest = [result async for result in run]
    assert len(rest) == 2
    # Released at the end of the run: the next run on the journal goes ahead.
    results = await collect(
        bulk_update(client, [(i, "1gbps") for i in second_ids], journal=journal)
    )
    assert [r.outcome for r in results] == [Outcome.COMPLETED] * 3


def test_the_lock_holds_across_processes(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from katapult_async.bulk._journal import _Journal; "
            "j = _Journal(sys.argv[1]); print('locked', flush=True); time.sleep(30)",
            str(journal),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JournalInUseError):
            _Journal(str(journal))
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    _Journal(str(journal)).close()  # released when its holder died


async def test_journal_fsync_every_100ms_and_at_the_end(
    sim: KatapultSimulator, client: KatapultClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(time.monotonic())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    ids = sim.add_interfaces(30)
    journal = tmp_path / "j.jsonl"
    started = time.monotonic()
    results = await collect(
        bulk_update(client, [(i, "1gbps") for i in ids], journal=journal, journal_fsync=True)
    )
    elapsed = time.monotonic() - started
    assert len(results) == 30
    assert 1 <= len(calls) <= elapsed / 0.1 + 3
    lines = journal.read_bytes().count(b"\n")
    assert lines == 30 * 3 + 2  # attempt, submitted and result; the run's two boundaries
    calls.clear()
    await collect(bulk_update(client, [(i, "1gbps") for i in ids], journal=journal))
    assert calls == []  # off by default


def test_fsync_timer_covers_a_lone_line(tmp_path: Path) -> None:
    import asyncio

    async def main() -> int:
        synced: list[int] = []
        journal = _Journal(str(tmp_path / "j.jsonl"), fsync=True)
        original = journal._sync

        def sync() -> None:
            synced.append(1)
            original()

        journal._sync = sync  # type: ignore[method-assign]
        journal._synced = time.monotonic()  # so that the next line waits for the timer
        journal.attempt(0, "vmnet_a", "1gbps")
        assert synced == []
        await asyncio.sleep(0.15)
        assert synced == [1]
        journal.close()
        return len(synced)

    assert asyncio.run(main()) >= 1


def test_cli_exits_2_on_a_locked_journal_and_takes_durable(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from katapult_async.cli import main
    from tests.chaos.simthread import SimulatorThread

    with SimulatorThread(task_duration=0.05, seed=3) as sim_thread:
        sim = sim_thread.sim
        ids = sim_thread.call(lambda: sim.add_interfaces(2))
        updates = tmp_path / "updates.csv"
        updates.write_text("interface,speed_profile\n" + "".join(f"{i},1gbps\n" for i in ids))
        journal = tmp_path / "run.journal.jsonl"
        env = {"KATAPULT_API_TOKEN": sim.token, "KATAPULT_BASE_URL": None}
        argv = ["--base-url", sim.base_url, "bulk", str(updates), "--journal", str(journal)]
        held = _Journal(str(journal))
        try:
            result = CliRunner().invoke(main, argv, env=env)
        finally:
            held.close()
        assert result.exit_code == 2, result.output
        assert "in use" in result.output
        assert str(journal) in " ".join(result.output.split()) or journal.name in result.output
        assert sim_thread.call(lambda: len(sim.requests)) == 0
        result = CliRunner().invoke(main, [*argv, "--durable"], env=env)
        assert result.exit_code == 0, result.output
