"""Client-side pacing for Katapult's per-token rate limit.

Every request made with an API token (speed-profile PATCHes and task polls alike) counts against
one limit of ``N`` requests per window (60 s in production). :class:`RateLimiter` keeps a bulk job
just under that limit, so that it runs at nearly full speed without ever being answered with a
429 once the limit is known.

How it works
------------
**The limit.** Several sources can name it; the effective limit ``L`` is chosen best first:

1. a ``limit`` given to the constructor (per ``window``);
2. ``X-Ratelimit-Permitted``, which the live API sends on every response, so pacing starts with
   the first response, before any 429;
3. ``detail.total_permitted`` of the first 429 body (only while no header has named the limit).

A later announcement with a different value replaces an earlier one (the token's limit was
changed). A configured limit is never raised by an announcement, but a smaller announced value
lowers it: we never exceed what the server says.

**What may start.** Every request start (ours, and the estimated starts of others, see below) is
appended to one sorted log of timestamps (a deque, trimmed from the left, amortised O(1)). A new
start at time ``t`` is allowed when both hold:

* fewer than ``U`` entries lie in ``(t - S, t]``, where ``U = L - reserve`` (the reserve is
  ``safety_margin`` of ``L``, rounded up, at least one request when ``L > 1``: 100 -> 97,
  1000 -> 970) and ``S = window + time_margin`` (``time_margin`` absorbs clock drift and jitter in
  network latency, by default ``max(0.05 s, 2 % of the window)``). Since any window-long
  interval lies inside some ``S``-long one, no window-long interval ever holds more than ``U`` of
  our starts. That is safe for a server that counts in a sliding window and for one that counts
  in fixed windows of any alignment; as long as the latency of two requests differs by less
  than ``time_margin``, it also holds for their arrival times at the server;
* at least ``S / U`` seconds have passed since our previous start. This spreads the starts evenly
  instead of letting the whole budget go out in a burst (after a pause, a crowd of waiters
  resumes one by one). At that spacing the log condition never binds by itself: the steady rate
  is ``U / S`` (97 / 2.05 s = 47.3 requests/s for 100 per 2 s, 94.6 % of the limit).

**Waiting.** Callers that may not start at once queue on one FIFO :class:`asyncio.Lock`. Only the
head of the queue sleeps, exactly until the next allowed start, then re-checks (the state may
have changed while it slept), records its start and hands over to the next one. Nothing polls.
Cancelling a waiter, queued or sleeping, records nothing and leaves the queue working.
Waking a sleeping head early is not attempted: if the limit is raised while it sleeps, it still
sleeps out the wait it computed (one spacing, or until the log or a pause allowed a start).

**Unknown limit.** Until a limit is known, :meth:`RateLimiter.acquire` returns at once (an O(1)
fast path that only logs the start), except during a 429 pause. The starts are logged anyway,
so that the window already holds them when the limit is learned.

**The first request goes alone** (``probe=True``, the default): until the first response has
been observed, only one request is in flight. The live API names the limit on every response,
so a crowd of callers that starts together learns the limit from that first answer instead of
sending more requests than the window allows before anyone knows it. It costs one round trip
at startup. A request that ends without a response releases the probe too, through
:meth:`RateLimiter.release`, which the client calls after every attempt.

**Usage by others.** ``X-Ratelimit-Remaining`` is what is left of the server's window when the
response was produced. Expressed against our effective limit, the server has counted
``L - remaining`` requests. Our log already holds every request we started in the last ``S``
seconds, including those still in flight that the server had not counted yet, so the log can
only over-state our own share. If the server's count is higher than the whole log, the
difference was spent by someone else (another process with the same token): the log is topped
up to the server's count with "phantom" starts stamped now. The top-up is idempotent (it
raises the log *to* the server's count, never *by* it), so repeated, duplicated or out-of-order
headers never add up: an older response reports more remaining and therefore changes nothing.
A phantom expires like any start, so a single stale header can hold us back by at most one
window. When the configured limit is below the server's, the headroom between the two is left
to the others before any phantom is needed.

**429s.** A 429 is counted, and its request stays in the log: the server counted it too. If a
``Retry-After`` came with it, all callers pause until then (at most one window). Otherwise the server's window holds
at least its limit plus the rejected request, so the log is topped up to ``L + 1`` and every
caller pauses until the log allows a new start again, that is, until enough of our recorded
starts have aged out; after that the spacing keeps the resumed starts apart. While the limit is
still unknown (a 429 without ``total_permitted``), the pause lasts until all of our recorded
starts have aged out (the oldest start + ``S``). A 429 that follows a start made after the
previous pause ended, within one window of it, shows that the server does not free capacity as
the log predicts (a fixed window filled by others, say): the pause is then a whole ``S`` from
now, after which any server's window has turned over. 429s that arrive during a pause (the
rejections of requests that were already in flight) only extend it.

The limiter is meant for one event loop and is not thread-safe. One instance may be shared by
several clients that use the same token on the same loop. Time comes only from the injected
``clock`` and ``sleep``, so tests can run it in virtual time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from itertools import repeat
from typing import Literal

import attrs

__all__ = ["RateLimitSource", "RateLimitState", "RateLimiter"]

RateLimitSource = Literal["configured", "headers", "429"]
"""Where the effective limit came from."""

_AnnouncedSource = Literal["headers", "429"]

logger = logging.getLogger("katapult_async.ratelimit")

# A sleeper may be woken this much early (event-loop timer resolution, float rounding of
# ``now + delay``); starting then rather than sleeping again is harmless next to ``time_margin``.
_EARLY = 1e-6
# Keeps ``ceil(100 * 0.03)`` at 3 despite float rounding.
_ROUNDING = 1e-9


@attrs.frozen
class RateLimitState:
    """A point-in-time view of a :class:`RateLimiter`.

    Attributes:
        limit: The effective limit per window, or None while it is unknown.
        window: The window length in seconds.
        in_window: Requests started in the last ``window`` seconds, including the usage of
            others that the ``X-Ratelimit-Remaining`` headers revealed.
        rate_limited: How many 429 responses have been observed.
        paused_until_in: Seconds until the current 429 pause ends, 0.0 if there is none.
        source: Where ``limit`` came from, or None while it is unknown.
    """

    limit: int | None
    window: float
    in_window: int
    rate_limited: int
    paused_until_in: float
    source: RateLimitSource | None


class RateLimiter:
    """Paces the requests of one API token so that they stay under its rate limit.

    Call :meth:`acquire` before starting every request, :meth:`observe` with the rate-limit
    headers of every response, and :meth:`observe_rate_limited` when a response is a 429. The
    module docstring explains the algorithm.

    Args:
        limit: Requests permitted per ``window``, if known. It is never raised by what the
            server announces, but a smaller announced limit lowers it. If None, the limit is
            learned from the responses.
        window: The length of the server's rate-limit window in seconds.
        safety_margin: The share of the limit held in reserve (rounded up, at least one request
            when the limit is above 1). The default leaves 97 of 100 usable.
        time_margin: Seconds added to the window against clock drift and latency jitter.
            Defaults to ``max(0.05, 0.02 * window)``.
        clock: Monotonic time in seconds.
        sleep: Awaitable sleep matching ``clock``.
        probe: Hold every other request until the first one is answered (see the module
            docstring). A caller using the limiter on its own must then call :meth:`release`
            after each request, or pass False.

    Raises:
        ValueError: If an argument is out of range.
    """

    def __init__(
        self,
        limit: int | None = None,
        window: float = 60.0,
        *,
        safety_margin: float = 0.03,
        time_margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        probe: bool = True,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, not {window!r}")
        if not 0 <= safety_margin < 1:
            raise ValueError(f"safety_margin must be in [0, 1), not {safety_margin!r}")
        if time_margin is None:
            time_margin = max(0.05, 0.02 * window)
        elif not (math.isfinite(time_margin) and time_margin >= 0):
            raise ValueError(f"time_margin must be a non-negative number, not {time_margin!r}")
        self._configured = limit
        self._window = float(window)
        self._span = float(window) + time_margin
        self._safety_margin = safety_margin
        self._clock = clock
        self._sleep = sleep

        self._announced: int | None = None
        self._announced_source: _AnnouncedSource | None = None
        self._limit: int | None = None
        self._source: RateLimitSource | None = None
        self._usable = 0
        self._spacing = 0.0

        # Start times in the last ``_span`` seconds, ours and phantom, sorted.
        self._starts: deque[float] = deque()
        self._last_start = -math.inf  # our own last start (phantoms excluded)
        self._pause_until = -math.inf
        self._last_pause_end: float | None = None
        self._rate_limited = 0
        self._waiting = 0
        self._queue = asyncio.Lock()
        # The first-response probe: on until a response (or a release) has been seen.
        self._probing = probe
        self._in_flight = 0
        self._answered: asyncio.Future[None] | None = None
        self._update_limit()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(limit={self._limit!r}, window={self._window!r}, "
            f"source={self._source!r})"
        )

    @property
    def limit(self) -> int | None:
        """The effective limit per window, or None while it is unknown."""
        return self._limit

    @property
    def window(self) -> float:
        """The window length in seconds."""
        return self._window

    @property
    def rate_limited_count(self) -> int:
        """How many 429 responses have been observed."""
        return self._rate_limited

    async def acquire(self) -> None:
        """Waits until one more request may start, and records its start.

        Callers are served in FIFO order. Cancelling a waiting call records nothing.
        """
        if not (self._probing and self._in_flight):
            now = self._clock()
            if self._limit is None:
                # Nothing to pace: no queue either. (Joining a queue that is still draining would
                # turn every later request into a lock hand-off, one loop iteration each.)
                if now >= self._pause_until:
                    self._record(now)
                    return
            elif not self._waiting and self._ready_at(now) <= now + _EARLY:
                self._record(now)
                return
        self._waiting += 1
        try:
            async with self._queue:
                while True:
                    if self._probing and self._in_flight:
                        await self._first_answer()
                        continue
                    now = self._clock()
                    ready_at = self._pause_until if self._limit is None else self._ready_at(now)
                    if ready_at <= now + _EARLY:
                        self._record(now)
                        # Space the next start from this one's slot, not from when the sleeper
                        # woke: timers fire late (whole milliseconds), and at short spacings that
                        # lateness would add up to a lower rate. The catch-up is at most one
                        # spacing, and the log still caps every window.
                        self._last_start = max(min(ready_at, now), now - self._spacing)
                        return
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug("waiting %.3fs for the rate limit", ready_at - now)
                    await self._sleep(ready_at - now)
        finally:
            self._waiting -= 1

    def release(self) -> None:
        """Says that a request started by :meth:`acquire` has ended (answered or not).

        Only the first-response probe needs it; the client calls it after every attempt.
        """
        if self._in_flight:
            self._in_flight -= 1
        self._end_probe()

    async def _first_answer(self) -> None:
        if self._answered is None or self._answered.done():
            self._answered = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._answered)

    def _end_probe(self) -> None:
        if self._probing:
            self._probing = False
            if self._answered is not None and not self._answered.done():
                self._answered.set_result(None)

    def observe(self, *, permitted: int | None, remaining: int | None) -> None:
        """Learns from the rate-limit headers of a response.

        Call it for every response, 429s included, with ``X-Ratelimit-Permitted`` and
        ``X-Ratelimit-Remaining`` parsed as integers (None when a header is absent or invalid).

        Args:
            permitted: The token's limit per window, as the server announces it.
            remaining: What is left of the server's current window.
        """
        self._end_probe()
        if permitted is not None and permitted > 0:
            self._announce(permitted, "headers")
        limit = self._limit
        if remaining is None or limit is None:
            return
        # The server's count, against our effective limit: when that is a configured limit below
        # the server's, the difference is headroom that others may use first.
        used = limit - max(remaining, 0)
        if used > 0:
            now = self._clock()
            self._trim(now)
            self._top_up(used, now)

    def observe_rate_limited(
        self, *, total_permitted: int | None, retry_after: float | None
    ) -> None:
        """Learns from a 429 ``rate_limit_reached`` response and pauses all callers.

        The rejected request stays recorded as a start: the server counted it too.

        Args:
            total_permitted: ``detail.total_permitted`` from the body, if present.
            retry_after: The ``Retry-After`` delay in seconds (see
                :func:`katapult_async._protocol.parse_retry_after`), or None. When given, callers
                pause exactly that long.
        """
        self._end_probe()
        now = self._clock()
        self._rate_limited += 1
        if total_permitted is not None and total_permitted > 0:
            self._announce(total_permitted, "429")
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            # Honoured up to one window: after that any server's window has turned over, and a
            # bogus hour-long Retry-After must not stall a bulk job.
            self._pause_until = max(self._pause_until, now + min(retry_after, self._span))
            self._last_pause_end = self._pause_until
            logger.info(
                "rate limit reached, Retry-After %.2fs: pausing all requests for %.2fs",
                retry_after,
                self._pause_until - now,
            )
            return
        # Did we start a request after the last pause ended, and still get rejected?
        last_pause_end = self._last_pause_end
        repeated = (
            last_pause_end is not None
            and now >= self._pause_until
            and now - last_pause_end < self._span
            and self._last_start >= last_pause_end - _EARLY
        )
        self._trim(now)
        starts = self._starts
        limit = self._limit
        if limit is None:
            resume = (starts[0] if starts else now) + self._span
        else:
            self._top_up(limit + 1, now)
            resume = starts[-self._usable] + self._span
        if repeated:
            resume = max(resume, now + self._span)
        self._pause_until = max(self._pause_until, resume)
        self._last_pause_end = self._pause_until
        logger.info(
            "rate limit reached (limit %s per %gs): pausing all requests for %.2fs",
            self._limit,
            self._window,
            self._pause_until - now,
        )

    def snapshot(self) -> RateLimitState:
        """Returns the current state as an immutable value."""
        now = self._clock()
        self._trim(now)
        cutoff = now - self._window
        in_window = 0
        for started in reversed(self._starts):
            if started <= cutoff:
                break
            in_window += 1
        return RateLimitState(
            limit=self._limit,
            window=self._window,
            in_window=in_window,
            rate_limited=self._rate_limited,
            paused_until_in=max(0.0, self._pause_until - now),
            source=self._source,
        )

    def _announce(self, limit: int, source: _AnnouncedSource) -> None:
        if source == "429" and self._announced_source == "headers":
            return  # the headers are the better source; a changed limit shows there too
        if limit != self._announced:
            self._announced = limit
            self._announced_source = source
            self._update_limit()

    def _update_limit(self) -> None:
        configured, announced = self._configured, self._announced
        if configured is not None and (announced is None or configured <= announced):
            self._limit, self._source = configured, "configured"
        elif announced is not None:
            self._limit, self._source = announced, self._announced_source
        else:
            self._limit, self._source = None, None
            return
        limit = self._limit
        logger.info("rate limit: %d requests per %gs (from %s)", limit, self._window, self._source)
        reserve = 0
        if self._safety_margin > 0:
            reserve = max(1, math.ceil(limit * self._safety_margin - _ROUNDING))
        self._usable = max(1, limit - reserve)
        self._spacing = self._span / self._usable

    def _ready_at(self, now: float) -> float:
        """The earliest time the next start is allowed, for a known limit."""
        self._trim(now)
        ready_at = max(self._pause_until, self._last_start + self._spacing)
        starts, usable = self._starts, self._usable
        if len(starts) >= usable:
            ready_at = max(ready_at, starts[-usable] + self._span)
        return ready_at

    def _record(self, now: float) -> None:
        if self._probing:
            self._in_flight += 1
        starts = self._starts
        starts.append(now)
        self._last_start = now
        if starts[0] <= now - self._span:
            self._trim(now)

    def _trim(self, now: float) -> None:
        cutoff = now - self._span
        starts = self._starts
        while starts and starts[0] <= cutoff:
            starts.popleft()

    def _top_up(self, count: int, now: float) -> None:
        """Adds phantom starts at ``now`` until the (trimmed) log holds ``count`` entries."""
        missing = count - len(self._starts)
        if missing > 0:
            self._starts.extend(repeat(now, missing))
