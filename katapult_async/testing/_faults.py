"""Faults injected on demand: what they are and which request they hit."""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator

import attrs


class FaultKind(str, enum.Enum):
    """What an injected fault does to the request it hits.

    Attributes:
        SERVICE_UNAVAILABLE: Answer 503 ``service_unavailable``; nothing is applied.
        TASK_QUEUEING_ERROR: Answer 406 ``task_queueing_error``; nothing is applied. Hits only
            speed-profile updates unless the rule names a method or path.
        DROP_CONNECTION: Close the connection without a response; nothing is applied.
        LOST_RESPONSE: Apply the request (an update creates its task and assigns the profile),
            then close the connection without sending the response.
        SLOW_RESPONSE: Wait ``delay`` seconds, then handle the request normally. If the client
            has hung up by then (say it timed out), the request is not applied.
        HTML_502: Answer ``502 Bad Gateway`` with an HTML page, as a proxy in front of the API
            would: ``Content-Type: text/html`` and none of the API's headers.
        RATE_LIMIT: Answer 429 ``rate_limit_reached``, with ``Retry-After`` if the rule has
            ``retry_after``.
        TASK_NOT_FOUND: Answer 404 ``task_not_found`` (read-after-write lag). Hits only task
            reads unless the rule names a method or path.
    """

    SERVICE_UNAVAILABLE = "service_unavailable"
    TASK_QUEUEING_ERROR = "task_queueing_error"
    DROP_CONNECTION = "drop_connection"
    LOST_RESPONSE = "lost_response"
    SLOW_RESPONSE = "slow_response"
    HTML_502 = "html_502"
    RATE_LIMIT = "rate_limit"
    TASK_NOT_FOUND = "task_not_found"


def _times(value: int | None) -> int | None:
    # -1 and None both mean "forever".
    return None if value is None or value == -1 else value


def _upper(value: str | None) -> str | None:
    return None if value is None else value.upper()


@attrs.frozen(kw_only=True)
class FaultRule:
    """A fault queued for upcoming requests; see ``KatapultSimulator.inject``.

    Attributes:
        kind: What the fault does.
        times: How many requests it hits; None (or -1 when creating) for every matching request.
        method: Hit only requests with this HTTP method (any case), or any method.
        path: Hit only requests whose path contains this text, or any path.
        probability: Chance, drawn from the simulator's seeded generator, that a matching
            request is hit; a request that escapes is checked against later rules.
        delay: Seconds to wait before the fault acts; the slowness of ``SLOW_RESPONSE``.
        retry_after: ``Retry-After`` value sent with ``RATE_LIMIT`` (seconds or an HTTP date).
        total_permitted: ``detail.total_permitted`` of an injected 429; None uses the
            configured rate limit, or 1000 (the live default) if there is none.
    """

    kind: FaultKind = attrs.field(converter=FaultKind)
    times: int | None = attrs.field(default=1, converter=_times)
    method: str | None = attrs.field(default=None, converter=_upper)
    path: str | None = None
    probability: float = 1.0
    delay: float = 0.0
    retry_after: float | str | None = None
    total_permitted: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be positive, -1 or None, got {self.times!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be between 0 and 1, got {self.probability!r}")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative, got {self.delay!r}")
        if self.kind is FaultKind.SLOW_RESPONSE and self.delay <= 0:
            raise ValueError("a SLOW_RESPONSE fault needs a positive delay")


class _Queued:
    """A rule in the queue with its remaining uses."""

    __slots__ = ("remaining", "rule")

    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule
        self.remaining = rule.times


class FaultQueue:
    """The queued rules, checked in order for each API request."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._queued: list[_Queued] = []

    def __bool__(self) -> bool:
        return bool(self._queued)

    def __iter__(self) -> Iterator[FaultRule]:
        return (queued.rule for queued in self._queued)

    def add(self, rule: FaultRule) -> None:
        self._queued.append(_Queued(rule))

    def clear(self) -> None:
        self._queued.clear()

    def pick(
        self, method: str, path: str, *, is_update: bool, is_task_read: bool
    ) -> FaultRule | None:
        """Return the rule that hits this request, using one of its uses, or None."""
        for queued in self._queued:
            rule = queued.rule
            if rule.method is not None and rule.method != method:
                continue
            if rule.path is not None and rule.path not in path:
                continue
            if rule.method is None and rule.path is None:
                if rule.kind is FaultKind.TASK_NOT_FOUND and not is_task_read:
                    continue
                if rule.kind is FaultKind.TASK_QUEUEING_ERROR and not is_update:
                    continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            if queued.remaining is not None:
                queued.remaining -= 1
                if queued.remaining == 0:
                    self._queued.remove(queued)
            return rule
        return None
