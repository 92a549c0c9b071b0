"""Client-side pacing for Katapult's per-token rate limit.

Every request made with an API token (speed-profile PATCHes and task polls alike) counts against
one limit of ``N`` requests per window (60 s in production). :class:`RateLimiter` keeps a bulk job
just under that limit, so that it runs at nearly full speed without ever being answered with a
429 once the limit is known. Which limit holds and when the next request may start is the pure
model of :mod:`katapult_async._budget` (the log of starts, the reserves, what ``X-Ratelimit-*``
headers and 429s teach); this module is its asyncio shell: the queue of waiting callers and the
first-response probe.

**Waiting.** Callers that may not start at once join one queue, ordered by ``priority`` (lower
first; :data:`PRIORITY_POLL` for task polls, 0 for everything else) and first come, first served
within a priority. Only the head of the queue sleeps, exactly until the next allowed start, then
re-checks (the state may have changed while it slept, and a more urgent caller may have arrived:
it then hands the head over), records its start and hands over to the next one. Nothing polls.
Cancelling a waiter, queued or sleeping, records nothing and leaves the queue working.
Waking a sleeping head early is not attempted: if the limit is raised while it sleeps, it still
sleeps out the wait it computed.

Why polls yield: while the budget binds, a PATCH starts a task that the run then waits for, and a
poll only notices a finish, which a little later costs nothing at that pace. Near the end of a
bulk run this sends the last PATCHes first, so the last tasks start (and end) sooner, and the
budget left goes to the polls that are due.

**Unknown limit.** Until a limit is known, :meth:`RateLimiter.acquire` returns at once (an O(1)
fast path that only logs the start), except during a 429 pause. The starts are logged anyway,
so that the window already holds them when the limit is learned.

**The first request goes alone** (``probe=True``, the default): until the first response has
been observed, only one request is in flight. The live API names the limit on every response,
so a crowd of callers that starts together learns the limit from that first answer instead of
sending more requests than the window allows before anyone knows it. It costs one round trip
at startup. A request that ends without a response releases the probe too, through
:meth:`RateLimiter.release`, which the client calls after every attempt.

The probe is bounded (``probe_timeout``, 0.3 s by default): if no answer has come by then, one
more request may start, and the number allowed in flight doubles every further ``probe_timeout``
without an answer (1, 2, 4, 8, ...), a slow start rather than the whole crowd at once. So a slow
or hung first request delays the run by about ``probe_timeout``, not by its own duration, and a
small unknown limit is still approached gradually. The first answer, to any of them, ends the
probe.

The limiter is meant for one event loop and is not thread-safe. One instance may be shared by
several clients that use the same token on the same loop. Time comes only from the injected
``clock`` and ``sleep``, so tests can run it in virtual time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable

import attrs

from katapult_async._budget import EARLY, PRIORITY_POLL, Budget, Pacing, RateLimitSource
from katapult_async._margin import default_time_margin

__all__ = [
    "DEFAULT_PROBE_TIMEOUT",
    "PRIORITY_POLL",
    "Pacing",
    "RateLimitSource",
    "RateLimitState",
    "RateLimiter",
]

logger = logging.getLogger("katapult_async.ratelimit")

DEFAULT_PROBE_TIMEOUT = 0.3
"""Seconds the first request goes alone before others start without its answer."""

# A queued caller: (priority, arrival number, the future set when it becomes the head).
_Entry = tuple[int, int, "asyncio.Future[None]"]


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
        remaining: Requests that may start right now without waiting (the budget left in the
            window, less the reserve, what is in flight and what others were seen to use), or
            None while the limit is unknown.
        refills_in: Seconds until the budget next frees a request (the oldest one counted ages
            out of the window), or None when nothing is counted or the limit is unknown.
        pacing: ``"burst"`` or ``"smooth"`` (see :class:`RateLimiter`).
    """

    limit: int | None
    window: float
    in_window: int
    rate_limited: int
    paused_until_in: float
    source: RateLimitSource | None
    remaining: int | None = None
    refills_in: float | None = None
    pacing: Pacing = "burst"


class RateLimiter:
    """Paces the requests of one API token so that they stay under its rate limit.

    Call :meth:`acquire` before starting every request, :meth:`observe` with the rate-limit
    headers of every response, :meth:`observe_rate_limited` when a response is a 429, and
    :meth:`release` when a request has ended, answered or not. The module docstrings (here and
    :mod:`katapult_async._budget`) explain the algorithm.

    Args:
        limit: Requests permitted per ``window``, if known. It is never raised by what the
            server announces, but a smaller announced limit lowers it. If None, the limit is
            learned from the responses.
        window: The length of the server's rate-limit window in seconds.
        pacing: ``"burst"`` (the default): spend the budget as fast as requests come, and wait
            only when it is spent, until it comes back (the oldest counted requests age out of
            the window). A job whose requests fit in what is left ends with its slowest task.
            ``"smooth"``: spread the budget evenly over the window (at most ``limit - reserve``
            starts per window, ``window / usable`` apart), for a token shared with people at
            a console.
        reserve: The share of the limit left for other users of the token, always (rounded
            up). Default: none with burst pacing (a reserve of 2 requests applies while
            ``X-Ratelimit-Remaining`` shows others using the token), 1 % with smooth pacing.
        safety_margin: Deprecated spelling of ``reserve`` (smooth pacing's reserve share,
            rounded up, at least one request when the limit is above 1).
        shared_margin: The reserve while ``X-Ratelimit-Remaining`` shows others using the same
            token (default 3 %: 97 of 100, or ``reserve`` if larger; both pacings then spread).
        time_margin: Seconds added to the window against latency jitter. By default it starts
            at ``max(0.02, 0.01 * window)`` and is then learned: twice the longest recent round
            trip (at least 5 ms, never more than at the start), from the start times that
            :meth:`acquire` returns and :meth:`release` is given back. A value given is kept.
        clock: Monotonic time in seconds.
        sleep: Awaitable sleep matching ``clock``.
        probe: Hold every other request until the first one is answered (see the module
            docstring). A caller using the limiter on its own must then call :meth:`release`
            after each request (as it should anyway), or pass False.
        probe_timeout: Seconds after which, still without an answer, the others start anyway,
            gradually. None waits for the answer however long it takes.

    Raises:
        ValueError: If an argument is out of range.
    """

    def __init__(
        self,
        limit: int | None = None,
        window: float = 60.0,
        *,
        pacing: Pacing = "burst",
        reserve: float | None = None,
        safety_margin: float | None = None,
        shared_margin: float | None = None,
        time_margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        probe: bool = True,
        probe_timeout: float | None = DEFAULT_PROBE_TIMEOUT,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, not {window!r}")
        if pacing not in ("burst", "smooth"):
            raise ValueError(f"pacing must be 'burst' or 'smooth', not {pacing!r}")
        if reserve is not None and safety_margin is not None:
            raise ValueError("give reserve= only, not also safety_margin=")
        if reserve is None:
            reserve = safety_margin
        if reserve is None:
            reserve = 0.0 if pacing == "burst" else 0.01
        if shared_margin is None:
            shared_margin = max(reserve, 0.03)
        for name, margin in (("reserve", reserve), ("shared_margin", shared_margin)):
            if not (isinstance(margin, (int, float)) and 0 <= margin < 1):
                raise ValueError(f"{name} must be a fraction in [0, 1), not {margin!r}")
        learn_margin = time_margin is None
        if time_margin is None:
            time_margin = default_time_margin(window)
            if pacing == "burst":
                # A burst's last requests reach the server well after their start before any
                # round trip is learned (a configured limit bursts from the first request):
                # start at a tenth of the window; 16 answers later it is learned.
                time_margin = max(time_margin, 0.1 * window)
        elif not (math.isfinite(time_margin) and time_margin >= 0):
            raise ValueError(f"time_margin must be a non-negative number, not {time_margin!r}")
        if probe_timeout is not None and not (math.isfinite(probe_timeout) and probe_timeout > 0):
            raise ValueError(f"probe_timeout must be a positive number, not {probe_timeout!r}")
        self._budget = Budget(
            limit,
            float(window),
            safety_margin=reserve,
            shared_margin=shared_margin,
            time_margin=time_margin,
            learn_margin=learn_margin,
            pacing=pacing,
        )
        self._pacing: Pacing = pacing
        self._clock = clock
        self._sleep = sleep
        self._queue: list[_Entry] = []  # a heap: the most urgent, then the oldest, first
        self._arrivals = itertools.count()
        self._head: _Entry | None = None  # the caller now allowed to sleep until the next start
        # The first-response probe: on until a response (or a release) has been seen.
        self._probing = probe
        self._probe_timeout = probe_timeout
        self._allowed = 1  # requests allowed in flight while probing
        self._probe_deadline = math.inf  # when ``_allowed`` doubles next
        self._answered: asyncio.Future[None] | None = None
        # Burst pacing while shared: a head that waits for an answer (see Budget._burst_cap).
        self._news: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        budget = self._budget
        return (
            f"{type(self).__name__}(limit={budget.limit!r}, window={budget.window!r}, "
            f"pacing={self._pacing!r}, source={budget.source!r})"
        )

    @property
    def limit(self) -> int | None:
        """The effective limit per window, or None while it is unknown."""
        return self._budget.limit

    @property
    def window(self) -> float:
        """The window length in seconds."""
        return self._budget.window

    @property
    def pacing(self) -> Pacing:
        """``"burst"`` or ``"smooth"``."""
        return self._pacing

    @property
    def waiting(self) -> int:
        """Callers queued for a start right now: above zero while the limit is what holds them."""
        return len(self._queue)

    def left(self) -> int | None:
        """Requests that may start right now without waiting (nobody queued, the limit known,
        the window's budget less the reserve and what is counted in it), or None when the limit
        is unknown."""
        if self._queue:
            return 0
        return self._budget.remaining(self._clock())

    @property
    def rate_limited_count(self) -> int:
        """How many 429 responses have been observed."""
        return self._budget.rate_limited

    async def acquire(self, priority: int = 0) -> float:
        """Waits until one more request may start, and records its start.

        Callers are served by ``priority`` (lower first), then in arrival order. Cancelling a
        waiting call records nothing.

        Args:
            priority: 0 for most requests; :data:`PRIORITY_POLL` for task polls, which yield to
                the others while the budget binds.

        Returns:
            The start time on the limiter's clock: give it back to :meth:`release`.
        """
        budget = self._budget
        if not (self._probing and self._budget.outgoing >= self._allowed):
            now = self._clock()
            if budget.limit is None:
                # Nothing to pace: no queue either. (Joining a queue that is still draining would
                # turn every later request into a lock hand-off, one loop iteration each.)
                if now >= budget.pause_until:
                    self._record(now, None)
                    return now
            elif not self._queue and budget.ready_at(now) <= now + EARLY:
                self._record(now, None)
                return now
        entry: _Entry = (priority, next(self._arrivals), asyncio.get_running_loop().create_future())
        heapq.heappush(self._queue, entry)
        try:
            self._promote()
            while True:
                if self._head is not entry:
                    await entry[2]
                    continue
                if self._queue[0] is not entry:  # a more urgent caller came: it goes first
                    entry = self._requeue(entry)
                    continue
                if self._probing and self._budget.outgoing >= self._allowed:
                    await self._first_answer()
                    continue
                now = self._clock()
                ready_at = budget.ready_at(now)
                if ready_at <= now + EARLY:
                    self._record(now, ready_at)
                    return now
                if ready_at == math.inf:
                    await self._next_news()
                    continue
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("waiting %.3fs for the rate limit", ready_at - now)
                await self._sleep(ready_at - now)
        finally:
            self._leave(entry)

    def _promote(self) -> None:
        """Makes the most urgent queued caller the head, if there is none."""
        if self._head is None and self._queue:
            head = self._head = self._queue[0]
            if not head[2].done():
                head[2].set_result(None)

    def _requeue(self, entry: _Entry) -> _Entry:
        """``entry`` stops being the head (it keeps its place) and the most urgent one takes over."""
        priority, arrival, _ = entry
        renewed: _Entry = (priority, arrival, asyncio.get_running_loop().create_future())
        queue = self._queue
        queue[queue.index(entry)] = renewed  # the same key: the heap order holds
        self._head = None
        self._promote()
        return renewed

    def _leave(self, entry: _Entry) -> None:
        """``entry`` has started or was cancelled: out of the queue, and the next one is head."""
        queue = self._queue
        if queue and queue[0] is entry:
            heapq.heappop(queue)
        else:
            queue.remove(entry)
            heapq.heapify(queue)
        if self._head is entry:
            self._head = None
        self._promote()

    def release(self, started: float | None = None) -> None:
        """Says that a request started by :meth:`acquire` has ended (answered or not).

        It ends the first-response probe, and tells the fixed-window accounting what is still
        outgoing (see :mod:`katapult_async._budget`). The client calls it after every attempt.

        Args:
            started: What :meth:`acquire` returned for it: its round trip teaches the time
                margin (see the class's ``time_margin``). None teaches nothing.
        """
        self._budget.end(started, None if started is None else self._clock())
        self._end_probe()
        self._notify()

    def _record(self, now: float, slot: float | None) -> None:
        if self._probing and not self._budget.outgoing and self._probe_timeout is not None:
            self._probe_deadline = min(self._probe_deadline, now + self._probe_timeout)
        self._budget.record(now, slot)

    async def _first_answer(self) -> None:
        """Waits for the first answer, or until the probe's deadline lets one more start."""
        if self._answered is None or self._answered.done():
            self._answered = asyncio.get_running_loop().create_future()
        now = self._clock()
        if now + EARLY >= self._probe_deadline:
            self._allowed *= 2
            self._probe_deadline = now + (self._probe_timeout or math.inf)
            logger.info("no answer yet: allowing %d requests in flight", self._allowed)
            return
        if math.isinf(self._probe_deadline):
            await asyncio.shield(self._answered)
            return
        sleeper = asyncio.ensure_future(self._sleep(self._probe_deadline - now))
        try:
            await asyncio.wait((self._answered, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()

    async def _next_news(self) -> None:
        """Waits until a request ends or an answer is observed."""
        if self._news is None or self._news.done():
            self._news = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._news)

    def _notify(self) -> None:
        news = self._news
        if news is not None and not news.done():
            news.set_result(None)

    def _end_probe(self) -> None:
        if self._probing:
            self._probing = False
            if self._answered is not None and not self._answered.done():
                self._answered.set_result(None)

    def observe(
        self, *, permitted: int | None, remaining: int | None, started: float | None = None
    ) -> None:
        """Learns from the rate-limit headers of a response.

        Call it for every response, 429s included, with ``X-Ratelimit-Permitted`` and
        ``X-Ratelimit-Remaining`` parsed as integers (None when a header is absent or invalid).

        Args:
            permitted: The token's limit per window, as the server announces it.
            remaining: What is left of the server's current window.
            started: What :meth:`acquire` returned for this request. With it, the limiter
                knows which of its starts the server can have counted, and tells the others'
                requests apart from its own precisely (the client passes it). Without it, every
                start in the log is taken as counted, which can hide a few of the others'.
        """
        self._end_probe()
        budget = self._budget
        if permitted is not None and permitted > 0:
            budget.announce(permitted, "headers")
        if remaining is None:
            budget.headerless = True
        elif budget.limit is not None:
            budget.observe_remaining(remaining, self._clock(), started)
        self._notify()

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
        self._budget.observe_rate_limited(total_permitted, retry_after, self._clock())
        self._notify()

    def snapshot(self) -> RateLimitState:
        """Returns the current state as an immutable value."""
        now = self._clock()
        budget = self._budget
        refills_at = budget.refills_at(now)
        return RateLimitState(
            limit=budget.limit,
            window=budget.window,
            in_window=budget.in_window(now),
            rate_limited=budget.rate_limited,
            paused_until_in=max(0.0, budget.pause_until - now),
            source=budget.source,
            remaining=budget.remaining(now),
            refills_in=None if refills_at is None else max(0.0, refills_at - now),
            pacing=self._pacing,
        )
