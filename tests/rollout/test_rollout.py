"""A bulk run with a ``Rollout``, against the simulator over loopback: canary, halt, read-back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from katapult_async import (
    BulkProgress,
    CanaryReport,
    KatapultClient,
    Outcome,
    Rollout,
    RolloutHaltedError,
    RunHaltedError,
    UpdateResult,
    VerificationError,
)
from katapult_async.testing import KatapultSimulator
from tests.rollout.helpers import patched, profile_of

SMALL_LIMIT = {"rate_limit": 30, "rate_limit_window": 1}
"""A small limit: every request of a rollout (PATCHes, polls, read-backs) must be paced."""


async def run(
    client: KatapultClient, pairs: list[tuple[str, str]], rollout: Rollout, **options: object
) -> list[UpdateResult]:
    results = [
        r
        async for r in client.bulk_update_speed_profiles(pairs, rollout=rollout, **options)  # type: ignore[arg-type]
    ]
    assert sorted(r.index for r in results) == list(range(len(pairs))), "one result per item"
    return results


def outcomes(results: list[UpdateResult]) -> dict[Outcome, int]:
    counts: dict[Outcome, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return counts


def halted_reason(results: list[UpdateResult]) -> str:
    errors = {id(r.error): r.error for r in results if r.outcome is Outcome.SKIPPED}
    assert len(errors) == 1, "every skipped item carries the one halt"
    (error,) = errors.values()
    assert isinstance(error, RolloutHaltedError)
    assert isinstance(error, RunHaltedError)
    return error.reason


@pytest.mark.katapult(interfaces=20, fail_profiles=["1gbps"], **SMALL_LIMIT)
async def test_a_canary_failure_halts_before_any_other_patch(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
) -> None:
    called: list[CanaryReport] = []
    pairs = [(i, "1gbps") for i in katapult_interfaces]
    results = await run(
        katapult_client, pairs, Rollout(canary=3, on_canary=called.append), concurrency=8
    )
    assert outcomes(results) == {Outcome.FAILED: 3, Outcome.SKIPPED: 17}
    assert len(patched(katapult_simulator)) == 3
    assert "canary" in halted_reason(results)
    assert not called
    assert katapult_simulator.stats.rate_limited == 0


@pytest.mark.katapult(interfaces=12, **SMALL_LIMIT)
async def test_on_canary_false_halts_and_a_rerun_finishes_the_rest(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
    tmp_path: Path,
) -> None:
    reports: list[CanaryReport] = []

    async def on_canary(report: CanaryReport) -> bool:
        reports.append(report)
        assert len(patched(katapult_simulator)) == 2  # nothing else started
        return False

    journal = tmp_path / "canary.jsonl"
    progress: list[BulkProgress] = []
    pairs = [(i, "100mbps") for i in katapult_interfaces]
    results = await run(
        katapult_client,
        pairs,
        Rollout(canary=2, on_canary=on_canary),
        journal=journal,
        on_progress=progress.append,
    )
    assert outcomes(results) == {Outcome.COMPLETED: 2, Outcome.SKIPPED: 10}
    assert len(reports) == 1
    assert [r.outcome for r in reports[0].results] == [Outcome.COMPLETED] * 2
    assert "on_canary" in halted_reason(results)
    assert isinstance(progress[-1].halted, RolloutHaltedError)
    assert progress[-1].skipped == 10
    runs = [json.loads(line) for line in journal.read_text().splitlines()]
    ends = [line for line in runs if line.get("event") == "run" and line["status"] != "started"]
    assert ends[-1]["status"] == "halted"
    assert "on_canary" in ends[-1]["reason"]

    # the same journal again: the skipped items are sent, the canary's are not
    katapult_simulator.clear_requests()
    again = await run(katapult_client, pairs, Rollout(canary=2), journal=journal)
    assert outcomes(again) == {Outcome.COMPLETED: 12}
    assert sum(r.resumed for r in again) == 2
    assert len(patched(katapult_simulator)) == 10
    assert {profile_of(katapult_simulator, i) for i in katapult_interfaces} == {"100mbps"}
    assert katapult_simulator.stats.rate_limited == 0


@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.katapult(interfaces=30, fail_profiles=["1gbps"], **SMALL_LIMIT)
async def test_max_failures_k_ends_with_at_most_k_plus_one_failed(
    k: int,
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
) -> None:
    pairs = [(i, "1gbps") for i in katapult_interfaces]
    results = await run(katapult_client, pairs, Rollout(max_failures=k), concurrency=8)
    assert outcomes(results) == {Outcome.FAILED: k + 1, Outcome.SKIPPED: 30 - (k + 1)}
    assert len(patched(katapult_simulator)) == k + 1
    assert f"max_failures={k}" in halted_reason(results)
    assert katapult_simulator.stats.rate_limited == 0


@pytest.mark.katapult(interfaces=30, fail_profiles=["1gbps"], **SMALL_LIMIT)
async def test_the_rate_applies_from_min_sample(
    katapult_client: KatapultClient, katapult_interfaces: list[str]
) -> None:
    ids = katapult_interfaces
    # two failures first (100 % of 2, but below min_sample), then 8 successes, then failures
    targets = ["1gbps"] * 2 + ["100mbps"] * 8 + ["1gbps"] * 20
    pairs = list(zip(ids, targets, strict=True))
    rollout = Rollout(max_failure_rate=0.2, min_sample=10)
    results = await run(katapult_client, pairs, rollout, concurrency=1)
    # 2 of 10 is not more than 20 %; 3 of 11 is
    assert outcomes(results) == {Outcome.FAILED: 3, Outcome.COMPLETED: 8, Outcome.SKIPPED: 19}
    assert "max_failure_rate=0.2" in halted_reason(results)


@pytest.mark.katapult(interfaces=10, task_no_change_rate=0.4, seed=5, **SMALL_LIMIT)
async def test_verification_catches_an_interface_that_kept_its_old_profile(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
) -> None:
    pairs = [(i, "1gbps") for i in katapult_interfaces]
    results = await run(katapult_client, pairs, Rollout(verify=1.0))
    wrong = [r for r in results if r.outcome is Outcome.ERROR]
    right = [r for r in results if r.outcome is Outcome.COMPLETED]
    assert wrong
    assert right
    assert len(wrong) + len(right) == 10
    for result in wrong:
        error = result.error
        assert isinstance(error, VerificationError)
        assert (error.expected, error.actual) == ("1gbps", "10gbps")
        assert profile_of(katapult_simulator, result.interface_id) == "10gbps"
        assert not result.verified
    for result in right:
        assert result.verified
        assert profile_of(katapult_simulator, result.interface_id) == "1gbps"
    assert katapult_simulator.stats.rate_limited == 0


@pytest.mark.katapult(interfaces=20)
async def test_verify_reads_back_the_share_asked(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
) -> None:
    def reads() -> int:
        return sum(
            1
            for r in katapult_simulator.requests
            if r.method == "GET" and "network_interface" in r.path
        )

    pairs = [(i, "1gbps") for i in katapult_interfaces]
    results = await run(katapult_client, pairs[:10], Rollout(verify=0.2))
    assert sum(r.verified for r in results) == reads() == 2
    katapult_simulator.clear_requests()
    results = await run(katapult_client, pairs[10:], Rollout())
    assert not any(r.verified for r in results)
    assert reads() == 0


@pytest.mark.katapult(interfaces=6, task_no_change_rate=1.0)
async def test_a_verification_failure_is_sent_again_on_a_rerun(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
    tmp_path: Path,
) -> None:
    journal = tmp_path / "verify.jsonl"
    pairs = [(i, "1gbps") for i in katapult_interfaces]
    rollout = Rollout(verify=1.0, max_failures=0)
    results = await run(katapult_client, pairs, rollout, journal=journal, concurrency=1)
    assert outcomes(results) == {Outcome.ERROR: 1, Outcome.SKIPPED: 5}
    katapult_simulator.clear_requests()
    again = await run(katapult_client, pairs, rollout, journal=journal, concurrency=1)
    assert patched(katapult_simulator)[0] == results[0].interface_id  # not taken as done
    assert outcomes(again) == {Outcome.ERROR: 1, Outcome.SKIPPED: 5}


async def test_a_rollout_needs_wait(katapult_client: KatapultClient) -> None:
    with pytest.raises(ValueError, match="wait=True"):
        katapult_client.bulk_update_speed_profiles([], wait=False, rollout=Rollout(canary=1))
