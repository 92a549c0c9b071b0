"""A safe rollout's options: :class:`Rollout` (canary, failure thresholds, verification) and the
:class:`CanaryReport` its ``on_canary`` callback receives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import attrs

from katapult_async.models import Outcome, UpdateResult

__all__ = ["CanaryCallback", "CanaryReport", "Rollout"]


@attrs.frozen
class CanaryReport:
    """The canary of a rollout, all finished and passed: what ``on_canary`` decides on.

    Attributes:
        results: The canary items' results, in the order they finished.
    """

    results: tuple[UpdateResult, ...]

    @property
    def verified(self) -> int:
        """How many of the canary items were read back and found right."""
        return sum(1 for result in self.results if result.verified)

    @property
    def completed(self) -> int:
        """How many of the canary items completed (the others were already assigned)."""
        return sum(1 for result in self.results if result.outcome is Outcome.COMPLETED)


CanaryCallback: TypeAlias = Callable[[CanaryReport], "bool | Awaitable[bool | None] | None"]
"""``on_canary``: a plain or coroutine function; returning ``False`` halts the run."""


def _non_negative_int(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative int, got {value!r}")


def _optional_non_negative_int(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    if value is not None:
        _non_negative_int(instance, attribute, value)


def _share(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 <= value <= 1.0  # also refuses NaN
    ):
        raise ValueError(f"{attribute.name} must be a number from 0 to 1, got {value!r}")


def _optional_share(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _share(instance, attribute, value)


def _positive_int(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive int, got {value!r}")


def _callable(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{attribute.name} must be callable or None, got {value!r}")


@attrs.frozen(kw_only=True)
class Rollout:
    """How a bulk update rolls out: a canary first, a halt past a failure threshold, read-backs.

    Pass it as ``bulk_update_speed_profiles(..., rollout=Rollout(...))``. What counts as a
    failure: ``FAILED``, and ``ERROR`` from the API, the transport, a task timeout or a
    verification. Bad input (a malformed item, a duplicate) does not count, nor do results taken
    from the journal; ``ALREADY_ASSIGNED`` is a success.

    A halt: no new PATCH starts, the items in flight finish (their tasks are awaited), and every
    item not started yields one ``SKIPPED`` result whose error is a
    :class:`~katapult_async.errors.RolloutHaltedError`. Rerunning with the same journal resumes:
    the skipped items are sent, and the thresholds count afresh.

    Attributes:
        canary: The first items sent (default 0: no canary). Nothing else starts until each has
            its final result (verification included); a canary failure halts the run.
        on_canary: Called, sync or async, with a :class:`CanaryReport` once the canary passed;
            returning ``False`` halts the run (anything else goes on).
        max_failures: Halt when the failures exceed this many. Strict: the PATCHes in flight
            never exceed the failures still tolerated plus one, so the run ends with at most
            ``max_failures + 1`` failed items.
        max_failure_rate: Halt when, with at least ``min_sample`` items finished, the failed
            share of them exceeds this (0 to 1); in flight as strictly as ``max_failures``.
        min_sample: The finished items needed before ``max_failure_rate`` applies (default 10).
        verify: The share of completed items whose interface is read back (one paced GET):
            a profile other than the target makes the item an ``ERROR`` with a
            :class:`~katapult_async.errors.VerificationError`. Spread evenly (0.1: every tenth);
            every canary item is read back when it is above 0.

    Raises:
        ValueError: for a negative count, a share outside 0..1, a ``min_sample`` below 1.
        TypeError: for an ``on_canary`` that is not callable.
    """

    canary: int = attrs.field(default=0, validator=_non_negative_int)
    on_canary: CanaryCallback | None = attrs.field(default=None, validator=_callable, eq=False)
    max_failures: int | None = attrs.field(default=None, validator=_optional_non_negative_int)
    max_failure_rate: float | None = attrs.field(default=None, validator=_optional_share)
    min_sample: int = attrs.field(default=10, validator=_positive_int)
    verify: float = attrs.field(default=0.0, validator=_share)
