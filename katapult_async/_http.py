"""The single HTTP choke point: every request goes through :meth:`HTTPTransport.request`.

It applies, in order: the shared rate limiter, the per-request timeout, the response size cap, error
mapping, and the retry policy (driven by ``backoff``). Endpoint code never touches aiohttp.

Every call's first attempt is made directly; the ``backoff`` machinery (its wait generator, timing
and per-try bookkeeping) is entered only after an attempt has failed with a retryable error, and
then replays that failure so that ``backoff`` schedules, logs and bounds the retries exactly as if
it had made the first attempt itself. Most calls succeed at once, and pay nothing for retries.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import aiohttp
import attrs
import backoff

from katapult_async._protocol import (
    APIRequest,
    ResponseMeta,
    decode_error,
    decode_success,
    read_meta,
)
from katapult_async._ratelimit import RateLimiter, parse_retry_after
from katapult_async._retry import backoff_wait, should_retry
from katapult_async._version import __version__
from katapult_async.errors import (
    InvalidResponseError,
    KatapultError,
    RateLimitReachedError,
    RequestTimeoutError,
    SpeedProfileAlreadyAssignedError,
    TransportError,
)

logger = logging.getLogger("katapult_async")

USER_AGENT = f"katapult-async/{__version__}"

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "katapult_async_deadline", default=None
)


def _current_deadline() -> float | None:
    return _deadline.get()


@attrs.frozen
class TransportConfig:
    """Options of the HTTP layer, normalised once by the client."""

    base_url: str
    timeout: float = 30.0
    max_retries: int = 8
    max_response_size: int = 1024 * 1024
    retry_base: float = 0.5
    retry_max_wait: float = 30.0


@attrs.define
class _CallState:
    """What one logical call remembers across its attempts."""

    request: APIRequest
    attempts: int = 0
    response_lost: bool = False
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
        # A session we create carries the headers itself (aiohttp then does not merge a per-request
        # dict into the defaults on every call); a caller's session gets them with each request.
        self._request_headers: dict[str, str] | None = None if session is None else self._headers
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._base_url = config.base_url.rstrip("/")
        self._retrying = backoff.on_exception(
            backoff_wait,
            KatapultError,
            max_tries=config.max_retries + 1,
            # backoff accepts None from the callable (no deadline); its stub says float only.
            max_time=cast("Callable[[], float]", _current_deadline),
            giveup=lambda exc: not should_retry(exc),
            jitter=backoff.full_jitter,
            on_backoff=self._log_backoff,
            logger=None,
            base=config.retry_base,
            max_value=config.retry_max_wait,
        )(self._retry_attempt)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=512)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
            # aiohttp silently resends an idempotent request once when the connection drops. That
            # resend bypasses the rate limiter (spending budget it cannot see) and max_retries, so
            # on the session we own we turn it off and let our own retry loop decide.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def close(self) -> None:
        """Close the session if this transport created it; a caller's session is left open."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request_with_meta(
        self, request: APIRequest, *, deadline: float | None = None
    ) -> tuple[Any, ResponseMeta]:
        """Send ``request`` with retries; return its decoded JSON body and :class:`ResponseMeta`.

        Args:
            request: The call to make.
            deadline: Seconds after which no further retry is started.

        Raises:
            APIError: (a subclass) for an error answer, after retries for transient ones.
            TransportError: when no answer came, after retries.
        """
        state = _CallState(request)
        started = time.monotonic() if deadline is not None else 0.0
        try:
            return await self._attempt(state)
        except KatapultError as exc:
            if self._config.max_retries == 0 or not should_retry(exc):
                exc.attempts = state.attempts
                raise
            state.replay = exc
        # backoff measures max_time from its own start, which is now after the first attempt.
        remaining = None if deadline is None else deadline - (time.monotonic() - started)
        token = _deadline.set(remaining)
        try:
            result: tuple[Any, ResponseMeta] = await self._retrying(state)
            return result
        except KatapultError as exc:
            exc.attempts = state.attempts
            raise
        finally:
            _deadline.reset(token)

    async def _retry_attempt(self, state: _CallState) -> tuple[Any, ResponseMeta]:
        """An attempt under ``backoff``; the first one replays the error of the direct attempt."""
        error = state.replay
        if error is not None:
            state.replay = None
            raise error
        return await self._attempt(state)

    async def _attempt(self, state: _CallState) -> tuple[Any, ResponseMeta]:
        request = state.request
        session = self._get_session()
        await self._limiter.acquire()
        state.attempts += 1
        try:
            async with session.request(
                request.method,
                self._base_url + request.path,
                params=request.params,
                json=request.body,
                headers=self._request_headers,
                allow_redirects=False,
                raise_for_status=False,
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                headers = resp.headers
                meta = read_meta(status, headers)
                self._limiter.observe(permitted=meta.permitted, remaining=meta.remaining)
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
                content_type = headers.get("Content-Type")
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
        except aiohttp.ClientError as exc:
            state.response_lost = state.response_lost or not request.idempotent
            raise TransportError(
                f"{request.kind or request.method}: {type(exc).__name__}: {exc}"
            ) from exc
        else:
            failure = None
        finally:
            # Ends the limiter's first-request probe even when no response came.
            self._limiter.release()
        if failure is not None:
            raise failure
        if 200 <= status < 300:
            return decode_success(status, content_type, body, meta.request_id), meta
        if 300 <= status < 400:
            location = headers.get("Location")
            raise InvalidResponseError(
                f"the API answered with a redirect to {location!r}; redirects are not followed",
                status=status,
                request_id=meta.request_id,
            )
        error = decode_error(meta, body, resp.reason)
        if isinstance(error, RateLimitReachedError):
            error.retry_after = parse_retry_after(meta.retry_after)
            self._limiter.observe_rate_limited(
                total_permitted=error.total_permitted, retry_after=error.retry_after
            )
        elif isinstance(error, SpeedProfileAlreadyAssignedError) and state.response_lost:
            error.after_lost_response = True
        raise error

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

    def _log_backoff(self, details: Mapping[str, Any]) -> None:
        state: _CallState = details["args"][0]
        exc = details.get("exception")
        logger.info(
            "retrying %s after attempt %d failed (%s); waiting %.2fs",
            state.request.kind or state.request.method,
            details["tries"],
            exc,
            details["wait"],
        )


def _too_large(meta: ResponseMeta, cap: int) -> InvalidResponseError:
    return InvalidResponseError(
        f"the response body is larger than the {cap}-byte cap",
        status=meta.status,
        request_id=meta.request_id,
    )
