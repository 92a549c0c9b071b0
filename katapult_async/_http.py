"""The single HTTP choke point: every request goes through :meth:`HTTPTransport.request_with_meta`.

This module owns the I/O, and only the I/O: the aiohttp session (and :func:`new_session`), the shared
rate limiter's acquire and release, the per-request timeout, reading the body under the size cap, and
the retries (the pure policy of :mod:`katapult_async._retry`, driven by ``backoff``). What a response
means is decided by the pure :func:`katapult_async._protocol.decode_response`. Endpoint code never
touches aiohttp. Each call's state is the context of its log records, and while OpenTelemetry is on
each attempt is timed and traced by :mod:`katapult_async._telemetry`.

Every call's first attempt is made directly; the ``backoff`` machinery (its wait generator, timing
and per-try bookkeeping) is entered only after an attempt has failed with a retryable error, and
then replays that failure so that ``backoff`` schedules, logs and bounds the retries exactly as if
it had made the first attempt itself. Most calls succeed at once, and pay nothing for retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs
import backoff

from katapult_async import _telemetry
from katapult_async._protocol import ResponseMeta, decode_response, read_meta
from katapult_async._ratelimit import RateLimiter
from katapult_async._requests import APIRequest
from katapult_async._retry import (
    FIRST_CONNECT_BUDGET,
    backoff_wait,
    connect_failure_reason,
    should_retry,
)
from katapult_async._version import __version__
from katapult_async.errors import (
    ConnectionFailedError,
    InvalidResponseError,
    KatapultError,
    RateLimitReachedError,
    RequestTimeoutError,
    TransportError,
)

logger = logging.getLogger("katapult_async")

USER_AGENT = f"katapult-async/{__version__}"

CONNECTION_LIMIT = 512
"""Connections a session from :func:`new_session` may hold open at once. Above aiohttp's default of
100 so that the pool does not cap a bulk run's concurrency: a request waiting for a pooled connection
has already passed the rate limiter, and spends its timeout in the queue. The limiter, not the pool,
paces requests."""


def new_session(
    *,
    headers: Mapping[str, str] | None = None,
    trace_configs: list[aiohttp.TraceConfig] | None = None,
) -> aiohttp.ClientSession:
    """An ``aiohttp.ClientSession`` as the client makes its own: :data:`CONNECTION_LIMIT`
    connections, and no silent resend by aiohttp.

    aiohttp silently resends an idempotent request once when the connection drops. That resend
    bypasses the rate limiter (spending budget it cannot see) and ``max_retries``, so it is turned
    off and the client's own retry loop decides.
    """
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONNECTION_LIMIT),
        headers=headers,
        trace_configs=trace_configs,
    )
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


@attrs.frozen
class TransportConfig:
    """Options of the HTTP layer, taken from the client's ``ClientConfig`` (which owns defaults)."""

    base_url: str
    timeout: float
    max_retries: int
    max_response_size: int


@attrs.define
class _CallState:
    """What one logical call remembers across its attempts."""

    request: APIRequest
    attempts: int = 0
    response_lost: bool = False
    meta: ResponseMeta | None = None  # the latest attempt's answer (for logs and telemetry)
    # The first attempt's error, made outside ``backoff``; the first retried attempt re-raises it.
    replay: KatapultError | None = None


class HTTPTransport:
    """Sends :class:`APIRequest` objects and returns decoded JSON with the response metadata."""

    def __init__(
        self,
        config: TransportConfig,
        *,
        token: str,
        limiter: RateLimiter,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._config = config
        self._limiter = limiter
        self._session = session
        self._owns_session = session is None
        self._closed = False
        # The token lives only in this header dict; nothing here ever formats it into text.
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        # The options of every request, as one dict: a session we create carries the headers
        # itself (aiohttp then does not merge a per-request dict into the defaults on every call)
        # and never raises for a status; a caller's session gets both with each request.
        self._send_options: dict[str, Any] = {
            "allow_redirects": False,
            "timeout": aiohttp.ClientTimeout(total=config.timeout),
        }
        if session is not None:
            self._send_options.update(headers=self._headers, raise_for_status=False)
        self._base_url = config.base_url.rstrip("/")
        self._answered = False  # any response ever received
        self._unreached_since: float | None = None  # first failed connection, while never answered
        self._said_unreachable = False
        self._retrying = backoff.on_exception(
            backoff_wait,
            KatapultError,
            max_tries=config.max_retries + 1,
            giveup=self._give_up,
            jitter=self._jitter,
            on_backoff=self._log_backoff,
            logger=None,
        )(self._retry_attempt)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._session is None:
            self._session = new_session(headers=self._headers)
        return self._session

    async def close(self) -> None:
        """Close the session if this transport created it; a caller's session is left open."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request_with_meta(self, request: APIRequest) -> tuple[Any, ResponseMeta]:
        """Send ``request`` with retries; return its decoded JSON body and :class:`ResponseMeta`.

        Raises:
            APIError: (a subclass) for an error answer, after retries for transient ones.
            TransportError: when no answer came, after retries.
        """
        state = _CallState(request)  # found here by the log-record context (_telemetry)
        try:
            return await self._attempt(state)
        except KatapultError as exc:
            if self._config.max_retries == 0 or self._give_up(exc):
                exc.attempts = state.attempts
                raise
            state.replay = exc
        try:
            result: tuple[Any, ResponseMeta] = await self._retrying(state)
            return result
        except KatapultError as exc:
            exc.attempts = state.attempts
            raise

    async def _retry_attempt(self, state: _CallState) -> tuple[Any, ResponseMeta]:
        """An attempt under ``backoff``; the first one replays the error of the direct attempt."""
        error = state.replay
        if error is not None:
            state.replay = None
            raise error
        return await self._attempt(state)

    async def _attempt(self, state: _CallState) -> tuple[Any, ResponseMeta]:
        session = self._get_session()
        telemetry = _telemetry.active
        if telemetry is not None:
            return await telemetry.attempt(
                state,
                self._base_url,
                self._limiter,
                lambda: self._acquire(state),
                lambda started: self._send(state, session, started),
            )
        # _acquire's two lines, inline: the untraced path pays for no extra coroutine
        started = await self._limiter.acquire(state.request.priority)
        state.attempts += 1
        return await self._send(state, session, started)

    async def _acquire(self, state: _CallState) -> float:
        """Wait for a start slot and count the attempt (the first half of a traced attempt)."""
        started = await self._limiter.acquire(state.request.priority)
        state.attempts += 1
        return started

    async def _send(
        self, state: _CallState, session: aiohttp.ClientSession, started: float
    ) -> tuple[Any, ResponseMeta]:
        request = state.request
        state.meta = None
        try:
            async with session.request(
                request.method,
                self._base_url + request.path,
                params=request.params,
                json=request.body,
                **self._send_options,
            ) as resp:
                self._answered = True
                headers = resp.headers
                meta = state.meta = read_meta(resp.status, headers)
                self._limiter.observe(
                    permitted=meta.permitted, remaining=meta.remaining, started=started
                )
                length = resp.content_length
                # Content-Length of a compressed body is its compressed size: stream and count.
                if (
                    length is not None
                    and length <= self._config.max_response_size
                    and "Content-Encoding" not in headers
                ):
                    body = await resp.read()
                else:
                    body = await self._read_body(resp, meta)
        except asyncio.TimeoutError as exc:
            state.response_lost = state.response_lost or not request.idempotent
            raise RequestTimeoutError(
                f"{request.kind or request.method}: no response within {self._config.timeout}s"
            ) from exc
        except aiohttp.ClientResponseError as exc:
            # Its args and repr carry request_info, request headers (the token) included: keep it
            # out of the chain, and raise outside the handler so __context__ does not hold it.
            state.response_lost = state.response_lost or not request.idempotent
            failure: TransportError | None = TransportError(
                f"{request.kind or request.method}: {type(exc).__name__}: {exc}"
            )
        except aiohttp.ClientConnectorError as exc:
            # No connection, so the request never left: nothing was lost.
            if self._unreached_since is None and not self._answered:
                self._unreached_since = time.monotonic()
            failure = ConnectionFailedError(self._base_url, connect_failure_reason(exc))
        except aiohttp.ClientError as exc:
            state.response_lost = state.response_lost or not request.idempotent
            raise TransportError(
                f"{request.kind or request.method}: {type(exc).__name__}: {exc}"
            ) from exc
        else:
            failure = None
        finally:
            # Ends the limiter's first-request probe even when no response came.
            self._limiter.release(started)
        if failure is not None:
            raise failure
        try:
            data = decode_response(
                meta, headers, body, reason=resp.reason, after_lost_response=state.response_lost
            )
        except RateLimitReachedError as error:
            self._limiter.observe_rate_limited(
                total_permitted=error.total_permitted, retry_after=error.retry_after
            )
            raise
        return data, meta

    async def _read_body(self, resp: aiohttp.ClientResponse, meta: ResponseMeta) -> bytes:
        """Read a body with no (or a too large) Content-Length, up to the size cap."""
        cap = self._config.max_response_size
        length = resp.content_length
        if length is not None and length > cap:
            raise _too_large(meta, cap)
        if length is not None and "Content-Encoding" not in resp.headers:
            return await resp.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > cap:
                raise _too_large(meta, cap)
            chunks.append(chunk)
        return b"".join(chunks)

    def _give_up(self, exc: BaseException) -> bool:
        """Whether a failed attempt is not retried (``should_retry``, and the first-connection
        budget: an API that has never answered is retried for :data:`FIRST_CONNECT_BUDGET`)."""
        if not should_retry(exc):
            return True
        since = self._unreached_since
        if isinstance(exc, ConnectionFailedError) and not self._answered and since is not None:
            return time.monotonic() - since >= FIRST_CONNECT_BUDGET
        return False

    def _jitter(self, value: float) -> float:
        """Full jitter; while the API has never answered, no wait beyond the first-connection
        budget (so that the last try comes when it ends, not up to a long backoff later)."""
        seconds: float = backoff.full_jitter(value)
        since = self._unreached_since
        if since is not None and not self._answered:
            seconds = min(seconds, max(0.0, since + FIRST_CONNECT_BUDGET - time.monotonic()))
        return seconds

    def _log_backoff(self, details: Mapping[str, Any]) -> None:
        state: _CallState = details["args"][0]
        exc = details.get("exception")
        if isinstance(exc, ConnectionFailedError) and not self._said_unreachable:
            self._said_unreachable = True  # once, at WARNING: the CLI shows it without -v
            budget = "a few seconds" if not self._answered else "up to the retry budget"
            logger.warning("%s; retrying for %s", exc, budget)
        logger.info(
            "retrying %s after attempt %d failed (%s); waiting %.2fs",
            state.request.kind or state.request.method,
            details["tries"],
            exc,
            details["wait"],
        )


# A record made during a call finds the call's ``state`` in this method's frame.
_telemetry.log_context_from(HTTPTransport.request_with_meta)


def _too_large(meta: ResponseMeta, cap: int) -> InvalidResponseError:
    return InvalidResponseError(
        f"the response body is larger than the {cap}-byte cap",
        status=meta.status,
        request_id=meta.request_id,
    )
