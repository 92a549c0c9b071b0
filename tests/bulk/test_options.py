"""The options of a bulk run travel as one frozen value, checked once at the entry point."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import attrs
import pytest

from katapult_async.bulk import bulk_update
from katapult_async.bulk._options import RunOptions
from katapult_async.client import KatapultClient

DEPRECATED = {"timeout"}  # the old spelling of task_timeout, folded into it at the edge


@pytest.mark.parametrize(
    "entry_point",
    [bulk_update, KatapultClient.bulk_update_speed_profiles],
    ids=lambda f: f.__name__,
)
def test_every_keyword_of_the_public_signatures_is_one_field_of_the_options(
    entry_point: Any,
) -> None:
    keywords = {
        name
        for name, parameter in inspect.signature(entry_point).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    fields = {field.name for field in attrs.fields(RunOptions)}
    assert keywords - DEPRECATED == fields
    for field in attrs.fields(RunOptions):  # and the same defaults
        assert inspect.signature(entry_point).parameters[field.name].default == field.default


def test_options_are_frozen_and_checked_once(tmp_path: Path) -> None:
    options = RunOptions(journal=tmp_path / "j.jsonl", concurrency=4)
    assert options.journal == str(tmp_path / "j.jsonl")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        options.concurrency = 5  # type: ignore[misc]
    for bad in (
        {"concurrency": 0},
        {"concurrency": True},
        {"task_timeout": 0},
        {"total": -1},
        {"confirm_horizon": -0.5},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RunOptions(**bad)


def test_bulk_update_checks_its_options_before_it_starts() -> None:
    with pytest.raises(ValueError, match="concurrency must be a positive int"):
        bulk_update(object(), [], concurrency=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task_timeout must be positive"):
        bulk_update(object(), [], task_timeout=-1)  # type: ignore[arg-type]
