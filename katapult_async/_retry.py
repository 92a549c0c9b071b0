"""The retry policy: a pure predicate and the wait generator that drives ``backoff``; the HTTP layer
(:mod:`katapult_async._http`) only wires them up. :func:`backoff_wait`'s defaults are the client's
backoff: 0.5 s, doubling, at most 30 s between attempts, before full jitter.

Retried (transient): 429 (after the limiter's pause), 503 ``service_unavailable``, 502/504 and other
5xx from a proxy, 406 ``task_queueing_error``, connection errors and timeouts. A PATCH whose
response was lost is retried too; if the retry answers ``speed_profile_already_assigned`` the first
attempt evidently landed (see :class:`~katapult_async.errors.SpeedProfileAlreadyAssignedError`).
Never retried: other 4xx (400/403/404/422 ...), responses the client cannot understand, and anything
that is not a :class:`~katapult_async.errors.KatapultError`.
"""

from __future__ import annotations

from collections.abc import Generator

from katapult_async.errors import (
    APIError,
    InvalidResponseError,
    RateLimitReachedError,
    ServiceUnavailableError,
    TaskQueueingError,
    TransportError,
)

__all__ = ["backoff_wait", "should_retry"]


def should_retry(exc: BaseException) -> bool:
    """Whether an attempt that raised ``exc`` is worth another try."""
    if isinstance(exc, (TransportError, RateLimitReachedError, ServiceUnavailableError)):
        return True
    if isinstance(exc, TaskQueueingError):
        return True
    if isinstance(exc, InvalidResponseError):
        # A 5xx page that is not JSON is a proxy's; a 2xx we cannot parse will not improve.
        return exc.status >= 500
    if isinstance(exc, APIError):
        return exc.status >= 500
    return False


def backoff_wait(
    base: float = 0.5, factor: float = 2.0, max_value: float = 30.0
) -> Generator[float, BaseException | None, None]:
    """A ``backoff`` wait generator: exponential, but no extra wait after a 429.

    ``backoff`` sends each exception into the generator, so a 429 can skip the exponential wait:
    the shared rate limiter already holds every caller until the window admits them, and waiting
    on top of it would only waste budget. The caller applies full jitter to what this yields.
    """
    retries = 0
    exc = yield 0.0  # primed by backoff with send(None)
    while True:
        if isinstance(exc, RateLimitReachedError):
            value = 0.0
        else:
            value = min(max_value, base * factor**retries)
            retries += 1
        exc = yield value
