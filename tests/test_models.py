from __future__ import annotations

import attrs
import pytest

import katapult_async as ka


def test_speed_profile_ref_needs_exactly_one() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ka.SpeedProfileRef()
    with pytest.raises(ValueError, match="exactly one"):
        ka.SpeedProfileRef(id="nsp_a", permalink="1gbps")
    assert ka.SpeedProfileRef.parse("nsp_abc") == ka.SpeedProfileRef(id="nsp_abc")
    assert ka.SpeedProfileRef.parse("1gbps") == ka.SpeedProfileRef(permalink="1gbps")


def test_refs_validate_values() -> None:
    with pytest.raises(ValueError):
        ka.NetworkInterfaceRef("")
    with pytest.raises(ValueError):
        ka.SpeedProfileRef(permalink="1 gbps")
    with pytest.raises(TypeError):
        ka.NetworkInterfaceRef.parse(None)  # type: ignore[arg-type]


def test_models_are_frozen() -> None:
    task = ka.Task(id="t")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        task.status = ka.TaskStatus.RUNNING  # type: ignore[misc]


def test_status_terminal() -> None:
    assert [s for s in ka.TaskStatus if s.is_terminal] == [
        ka.TaskStatus.COMPLETED,
        ka.TaskStatus.FAILED,
    ]
    assert ka.TaskStatus("running") is ka.TaskStatus.RUNNING


def test_names_moved_out_of_bulk_are_still_importable_from_it() -> None:
    from katapult_async import bulk, errors, models

    assert bulk.BulkProgress is models.BulkProgress is ka.BulkProgress
    assert bulk.UpdateItem is models.UpdateItem is ka.UpdateItem
    assert bulk.DuplicateItemError is errors.DuplicateItemError is ka.DuplicateItemError
    assert bulk.UnconfirmedUpdateError is errors.UnconfirmedUpdateError
    assert bulk.JournalInUseError is errors.JournalInUseError is ka.JournalInUseError
    assert sorted(bulk.__all__) == [
        "BulkProgress",
        "DEFAULT_CONFIRM_HORIZON",
        "DuplicateItemError",
        "JournalInUseError",
        "NothingToResumeError",
        "SupportsBulkUpdate",
        "UnconfirmedUpdateError",
        "UpdateItem",
        "bulk_update",
    ]
