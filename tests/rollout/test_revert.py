"""``client.revert_speed_profiles``: every interface a journaled run changed, put back."""

from __future__ import annotations

from pathlib import Path

import pytest

from katapult_async import (
    DriftedError,
    KatapultClient,
    NoPreviousProfileError,
    Outcome,
    SpeedProfileRef,
    UpdateResult,
)
from katapult_async.testing import KatapultSimulator
from tests.rollout.helpers import patched, profile_of


async def run(client: KatapultClient, items: object, journal: Path, **kw: object) -> None:
    async for _ in client.bulk_update_speed_profiles(items, journal=journal, **kw):  # type: ignore[arg-type]
        pass


async def revert(client: KatapultClient, journal: Path, **kw: object) -> list[UpdateResult]:
    return [r async for r in client.revert_speed_profiles(journal, **kw)]  # type: ignore[arg-type]


@pytest.mark.katapult(interfaces=6, rate_limit=30, rate_limit_window=1)
async def test_revert_puts_back_skips_drifted_and_unrecorded(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
    tmp_path: Path,
) -> None:
    ids = katapult_interfaces
    journal = tmp_path / "run.jsonl"
    # five with a previous profile (from a plan), one without
    await run(katapult_client, [(i, "1gbps", "10gbps") for i in ids[:5]], journal)
    await run(katapult_client, [(ids[5], "1gbps")], tmp_path / "other.jsonl")
    await run(katapult_client, [(ids[5], "1gbps")], journal)  # already assigned: not a change
    await katapult_client.update_speed_profile(ids[1], "500mbps", wait=True)  # drift
    await katapult_client.update_speed_profile(ids[2], "10gbps", wait=True)  # put back already
    katapult_simulator.clear_requests()

    results = await revert(katapult_client, journal)

    by_id = {r.interface_id: r for r in results}
    assert len(results) == len(by_id) == 5
    assert sorted(r.index for r in results) == list(range(5))
    assert by_id[ids[0]].outcome is Outcome.COMPLETED
    assert by_id[ids[0]].speed_profile == SpeedProfileRef(permalink="10gbps")
    assert by_id[ids[0]].previous_speed_profile is not None
    assert by_id[ids[1]].outcome is Outcome.SKIPPED
    drift = by_id[ids[1]].error
    assert isinstance(drift, DriftedError)
    assert (drift.expected, drift.actual, drift.previous) == ("1gbps", "500mbps", "10gbps")
    assert by_id[ids[2]].outcome is Outcome.ALREADY_ASSIGNED
    assert {by_id[i].outcome for i in ids[3:5]} == {Outcome.COMPLETED}
    assert sorted(patched(katapult_simulator)) == sorted([ids[0], ids[3], ids[4]])
    assert [profile_of(katapult_simulator, i) for i in ids[:5]] == [
        "10gbps", "500mbps", "10gbps", "10gbps", "10gbps",
    ]  # fmt: skip
    assert (tmp_path / "run.jsonl.undo.jsonl").exists()
    assert katapult_simulator.stats.rate_limited == 0

    # force reverts the drifted one; a rerun finds every interface in place
    results = await revert(katapult_client, journal, force=True)
    assert {r.interface_id: r.outcome for r in results}[ids[1]] is Outcome.COMPLETED
    assert profile_of(katapult_simulator, ids[1]) == "10gbps"
    results = await revert(katapult_client, journal)
    assert {r.outcome for r in results} == {Outcome.ALREADY_ASSIGNED}

    # without a recorded previous profile: skipped, said why
    bare = tmp_path / "bare.jsonl"
    await run(katapult_client, [(ids[5], "100mbps")], bare)
    (result,) = await revert(katapult_client, bare, revert_journal=tmp_path / "own.jsonl")
    assert result.outcome is Outcome.SKIPPED
    assert isinstance(result.error, NoPreviousProfileError)
    assert profile_of(katapult_simulator, ids[5]) == "100mbps"


async def test_revert_of_a_missing_journal_raises_at_once(
    katapult_client: KatapultClient, tmp_path: Path
) -> None:
    with pytest.raises(OSError):
        katapult_client.revert_speed_profiles(tmp_path / "nope.jsonl")


@pytest.mark.katapult(interfaces=2)
async def test_last_run_reverts_only_the_journals_last_run(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
    tmp_path: Path,
) -> None:
    first, second = katapult_interfaces
    journal = tmp_path / "runs.jsonl"
    await run(katapult_client, [(first, "1gbps", "10gbps"), (second, "1gbps", "10gbps")], journal)
    await run(katapult_client, [(second, "500mbps", "1gbps")], journal)  # a new run
    results = await revert(katapult_client, journal, last_run=True)
    assert [(r.interface_id, r.outcome) for r in results] == [(second, Outcome.COMPLETED)]
    assert (profile_of(katapult_simulator, first), profile_of(katapult_simulator, second)) == (
        "1gbps",
        "1gbps",
    )
