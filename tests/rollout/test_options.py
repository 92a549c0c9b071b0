"""The ``Rollout`` value: validated once, at the edge."""

from __future__ import annotations

import pickle

import attrs
import pytest

from katapult_async import (
    CanaryReport,
    DriftedError,
    NoPreviousProfileError,
    Outcome,
    Rollout,
    RolloutHaltedError,
    UpdateResult,
    VerificationError,
)


def test_defaults_change_nothing() -> None:
    rollout = Rollout()
    assert (rollout.canary, rollout.max_failures, rollout.max_failure_rate) == (0, None, None)
    assert (rollout.min_sample, rollout.verify, rollout.on_canary) == (10, 0.0, None)
    assert attrs.evolve(rollout, canary=3).canary == 3


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"canary": -1}, ValueError),
        ({"canary": True}, ValueError),
        ({"canary": 1.5}, ValueError),
        ({"max_failures": -1}, ValueError),
        ({"max_failure_rate": 1.5}, ValueError),
        ({"max_failure_rate": float("nan")}, ValueError),
        ({"min_sample": 0}, ValueError),
        ({"verify": -0.1}, ValueError),
        ({"verify": "all"}, ValueError),
        ({"on_canary": "yes"}, TypeError),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(options))):
        Rollout(**options)  # type: ignore[arg-type]


def test_canary_report_counts() -> None:
    results = (
        UpdateResult("vmnet_a", None, Outcome.COMPLETED, verified=True),
        UpdateResult("vmnet_b", None, Outcome.ALREADY_ASSIGNED),
    )
    report = CanaryReport(results)
    assert (report.completed, report.verified) == (1, 1)


@pytest.mark.parametrize(
    "error",
    [
        VerificationError("vmnet_a", "1gbps", "10gbps"),
        RolloutHaltedError("the canary failed", failures=1, finished=2),
        DriftedError("vmnet_a", "1gbps", None, "10gbps"),
        NoPreviousProfileError("vmnet_a"),
    ],
)
def test_the_new_errors_pickle_with_their_data(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_a_verified_result_says_so_in_the_journal_record() -> None:
    from katapult_async.bulk._journal import JournalRecord, dumps, loads

    result = UpdateResult("vmnet_a", None, Outcome.COMPLETED, verified=True)
    line = dumps(JournalRecord.from_result(result))
    assert '"verified": true' in line
    record = loads(line)
    assert record is not None
    assert record.verified
    plain = dumps(JournalRecord.from_result(UpdateResult("vmnet_a", None, Outcome.COMPLETED)))
    assert "verified" not in plain
