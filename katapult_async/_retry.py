"""The retry policy: a pure predicate and the wait generator that drives ``backoff``; the HTTP layer
(:mod:`katapult_async._http`) only wires them up. :func:`backoff_wait`'s defaults are the client's
backoff: 0.5 s, doubling, at most 30 s between attempts, before full jitter.

Retried (transient): 429 (after the limiter's pause), 503 ``service_unavailable``, 502/504 and other
5xx from a proxy, 406 ``task_queueing_error``, connection errors and timeouts. A PATCH whose
response was lost is retried too; if the retry answers ``speed_profile_already_assigned`` the first
attempt evidently landed (see :class:`~katapult_async.errors.SpeedProfileAlreadyAssignedError`).
Never retried: other 4xx (400/403/404/422 ...), responses the client cannot understand, and anything
that is not a :class:`~katapult_async.errors.KatapultError`.

A failed connection (:class:`~katapult_async.errors.ConnectionFailedError`) to an API that has never
answered this client is retried for :data:`FIRST_CONNECT_BUDGET` seconds only, not the whole budget:
a wrong base URL or a server that is down is not worth minutes. :func:`connect_failure_reason` says
what went wrong in plain words.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Generator

from katapult_async.errors import (
    APIError,
    InvalidResponseError,
    RateLimitReachedError,
    ServiceUnavailableError,
    TaskQueueingError,
    TransportError,
)

__all__ = ["FIRST_CONNECT_BUDGET", "backoff_wait", "connect_failure_reason", "should_retry"]

FIRST_CONNECT_BUDGET = 2.0
"""Seconds failed connections are retried while the API has never answered this client."""


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


def connect_failure_reason(exc: BaseException) -> str:
    """Why a connection could not be made, in plain words (``"connection refused"``).

    ``exc`` is aiohttp's ``ClientConnectorError`` (its ``os_error``), or any ``OSError``; the
    text carries no ``ssl:default`` or address tuple.
    """
    error = getattr(exc, "os_error", exc)
    if isinstance(error, socket.gaierror):
        return "the host name could not be resolved"
    if (
        isinstance(error, ConnectionRefusedError)
        or getattr(error, "errno", None) == errno.ECONNREFUSED
    ):
        return "connection refused"
    code = getattr(error, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code).lower()
    text = " ".join(str(error).split())
    return text or type(error).__name__
