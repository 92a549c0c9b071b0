"""The options of one bulk run, as one frozen value built and validated once, at the entry point.

:func:`~katapult_async.bulk.bulk_update` (and the client's ``bulk_update_speed_profiles``) take
their options as keywords, build a :class:`RunOptions` from them, and hand that one value down:
the run (``_engine``) and each item's processor (``_item``) read the fields they need from it. A
new option is a field here (with its check) and a keyword of the public signatures, nothing in
between.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from katapult_async._callbacks import ProgressCallback
from katapult_async._rollout import Rollout
from katapult_async.models import BulkProgress

__all__ = ["RunOptions"]


def _positive_int(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive int, got {value!r}")


def _count(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative int, got {value!r}")


def _count_or_none(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{attribute.name} must be a non-negative int or None, got {value!r}")


def _positive_or_none(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive or None, got {value!r}")


def _non_negative_or_none(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0 or None, got {value!r}")


def _path_or_none(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


@attrs.frozen(kw_only=True)
class RunOptions:
    """How one bulk run works; each field is the keyword of the same name of
    :func:`~katapult_async.bulk.bulk_update`, documented there.

    Raises:
        ValueError: for an invalid value (checked when the value is built, before any request).
    """

    concurrency: int = attrs.field(default=16, validator=_positive_int)
    max_tasks: int = attrs.field(default=1000, validator=_count)
    wait: bool = True
    on_progress: ProgressCallback[BulkProgress] | None = None
    journal: str | None = attrs.field(default=None, converter=_path_or_none)
    task_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    total: int | None = attrs.field(default=None, validator=_count_or_none)
    journal_fsync: bool = False
    record_previous: bool = False
    confirm_horizon: float | None = attrs.field(default=None, validator=_non_negative_or_none)
    resume: bool | None = None
    rollout: Rollout | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(Rollout))
    )

    def __attrs_post_init__(self) -> None:
        if self.rollout is not None and not self.wait:
            raise ValueError(
                "a rollout needs wait=True: its canary and its thresholds go by the tasks' ends"
            )
