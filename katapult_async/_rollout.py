"""A safe rollout: its options, :class:`Rollout` (canary, failure thresholds, verification), the
:class:`CanaryReport` its ``on_canary`` callback receives, and :class:`RolloutGate`, the policy the
bulk engine consults before each PATCH (which item may start when, when to halt, which completed
item to read back). The gate knows nothing of HTTP: it counts results and wakes waiters."""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import attrs

from katapult_async.errors import RolloutHaltedError
from katapult_async.models import Outcome, UpdateResult

__all__ = ["CanaryCallback", "CanaryReport", "Rollout", "RolloutGate"]


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
            returning ``False`` halts the run (anything else goes on). An exception it raises
            ends the run, as one from ``on_progress`` does.
        max_failures: Halt when the failures exceed this many. Strict: the PATCHes in flight
            never exceed the failures still tolerated plus one, so the run ends with at most
            ``max_failures + 1`` failed items.
        max_failure_rate: Halt when, with at least ``min_sample`` items finished, the failed
            share of them exceeds this (0 to 1); in flight as strictly as ``max_failures``.
        min_sample: The finished items needed before ``max_failure_rate`` applies (default 10).
        verify: The share of completed items whose interface is read back (one paced GET):
            a profile other than the target makes the item an ``ERROR`` with a
            :class:`~katapult_async.errors.VerificationError` (a read that fails: an ``ERROR``
            with that error). Spread evenly (0.1: every tenth); every canary item is read back
            when it is above 0. A rerun with the same journal sends an item that failed its
            read-back again.

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


_CANARY, _DECIDING, _MAIN = "canary", "deciding", "main"


@attrs.define
class _Ticket:
    """An item let through the gate: it may send its PATCH."""

    canary: bool


class RolloutGate:
    """The rollout's side of a run: which item may send its PATCH when, and when to halt.

    Every item that is about to send a PATCH (or the read before it) waits in :meth:`admit`; its
    result goes back through :meth:`finish`. The canary's items are let through first and the
    rest wait until each has finished and ``on_canary`` has agreed; after that an item may start
    only while the failures still tolerated cover every PATCH in flight, itself included, all
    failing (the strict rule: ``max_failures=k`` ends with at most ``k + 1`` failures). Items the
    gate never saw (bad input, results from the journal) do not count.

    Args:
        rollout: The options.
        on_halt: Called once, with the error every item not started gets, when the gate halts.
        stopped: Whether the run stopped for another reason (its items then stop waiting).
    """

    def __init__(
        self,
        rollout: Rollout,
        *,
        on_halt: Callable[[RolloutHaltedError], None] | None = None,
        stopped: Callable[[], bool] | None = None,
    ) -> None:
        self.rollout = rollout
        self._on_halt = on_halt
        self._stopped = stopped
        # Items waiting for their turn, first come first served; each is woken only when it may
        # start (or the run halted), so a long queue costs nothing per result.
        self._waiting: deque[asyncio.Future[_Ticket | RolloutHaltedError | None]] = deque()
        self._phase = _CANARY if rollout.canary else _MAIN
        self._canary_started = 0
        self._canary_results: list[UpdateResult] = []
        self.in_flight = 0
        self.finished = 0
        self.failures = 0
        self._completed = 0
        self.halted: RolloutHaltedError | None = None

    def exceeds(self, failures: int, finished: int) -> bool:
        """Whether ``failures`` of ``finished`` items are past a threshold (the halt rule)."""
        rollout = self.rollout
        if rollout.max_failures is not None and failures > rollout.max_failures:
            return True
        rate = rollout.max_failure_rate
        return rate is not None and finished >= rollout.min_sample and failures / finished > rate

    def _may_start(self) -> bool:
        if self._phase == _CANARY:
            return self._canary_started < self.rollout.canary
        if self._phase == _DECIDING:
            return False
        # Strict: even if every PATCH in flight and this one failed, at most one over the limit.
        n = self.in_flight
        return not self.exceeds(self.failures + n, self.finished + n)

    def _over(self) -> bool:
        """Whether nothing more may start: the gate halted, or the run stopped otherwise."""
        return self.halted is not None or (self._stopped is not None and self._stopped())

    def _take(self) -> _Ticket:
        canary = self._phase == _CANARY
        self._canary_started += canary
        self.in_flight += 1
        return _Ticket(canary)

    async def admit(self) -> _Ticket | RolloutHaltedError | None:
        """Wait until this item may start: a ticket; or the halt error (the item is skipped);
        or ``None`` when the run stopped for another reason. Items start in the order they came.
        """
        if self._over():
            return self.halted
        if not self._waiting and self._may_start():
            return self._take()
        turn: asyncio.Future[_Ticket | RolloutHaltedError | None]
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and isinstance(turn.result(), _Ticket):
                self.in_flight -= 1  # let through, but never to start: give its place back
                self.wake()
            raise

    def verify(self, ticket: _Ticket) -> bool:
        """Whether a completed item is to be read back (every canary item; else an even
        ``verify`` share of the completed ones)."""
        share = self.rollout.verify
        if share <= 0:
            return False
        if ticket.canary:
            return True
        self._completed += 1
        return int(self._completed * share) > int((self._completed - 1) * share)

    async def finish(self, ticket: _Ticket, result: UpdateResult) -> None:
        """Count the result of an item let through; halt, or decide on the canary, if due."""
        decide = False
        self.in_flight -= 1
        if result.outcome is Outcome.SKIPPED:  # the run halted before it was sent: not counted
            self.wake()
            return
        failed = result.outcome in (Outcome.FAILED, Outcome.ERROR)
        self.finished += 1
        self.failures += failed
        if ticket.canary:
            self._canary_results.append(result)
            if failed:
                self._halt(f"canary item {result.interface_id} failed")
            elif len(self._canary_results) == self.rollout.canary and self.halted is None:
                self._phase = _DECIDING
                decide = True
        elif self.exceeds(self.failures, self.finished):
            self._halt(self._threshold_reason())
        self.wake()
        if decide:
            report = CanaryReport(tuple(self._canary_results))
            go_on = await _call(self.rollout.on_canary, report)
            if go_on is False:
                self._halt("on_canary said not to go on")
            else:
                self._phase = _MAIN
            self.wake()

    def wake(self) -> None:
        """Let the waiting items through that may start now, in order, or all of them go when
        the run has halted (after a result, a decision, or the run stopped otherwise)."""
        waiting = self._waiting
        while waiting:
            turn = waiting[0]
            if turn.done():  # its item was cancelled
                waiting.popleft()
                continue
            if self._over():
                waiting.popleft().set_result(self.halted)
                continue
            if not self._may_start():
                return
            waiting.popleft().set_result(self._take())

    def _threshold_reason(self) -> str:
        rollout = self.rollout
        if rollout.max_failures is not None and self.failures > rollout.max_failures:
            return f"{self.failures} failures exceed max_failures={rollout.max_failures}"
        return (
            f"{self.failures} of {self.finished} failed, more than "
            f"max_failure_rate={rollout.max_failure_rate:g}"
        )

    def _halt(self, reason: str) -> None:
        if self.halted is not None:
            return
        self.halted = RolloutHaltedError(reason, failures=self.failures, finished=self.finished)
        if self._on_halt is not None:
            self._on_halt(self.halted)


async def _call(callback: CanaryCallback | None, report: CanaryReport) -> bool | None:
    if callback is None:
        return None
    answer = callback(report)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer
