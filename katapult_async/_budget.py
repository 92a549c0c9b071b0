"""The pure model behind :class:`~katapult_async._ratelimit.RateLimiter`: which limit holds, and
when the next request may start. No I/O, no asyncio, no clock of its own: every time is passed in,
so it is tested in virtual time (``tests/test_budget.py``).

The limit
---------
Several sources can name it; the effective limit ``L`` is chosen best first:

1. a ``limit`` given to the constructor (per ``window``);
2. ``X-Ratelimit-Permitted``, which the live API sends on every response, so pacing starts with
   the first response, before any 429;
3. ``detail.total_permitted`` of the first 429 body (only while no header has named the limit).

A later announcement with a different value replaces an earlier one (the token's limit was
changed). A configured limit is never raised by an announcement, but a smaller announced value
lowers it: we never exceed what the server says.

What may start
--------------
Every request start (ours, and the estimated starts of others, see below) is appended to one
sorted log of timestamps (a deque, trimmed from the left, amortised O(1)). A new start at time
``t`` is allowed when both hold:

* fewer than ``U`` entries lie in ``(t - S, t]``, where ``U = L - reserve`` and
  ``S = window + time_margin``. The reserve is ``safety_margin`` of ``L`` rounded up, at least one
  request when ``L > 1`` (100 -> 99, 1000 -> 990); while another user of the token has shown up
  in the last ``S`` (see below) it is ``shared_margin`` instead, and at least what the others
  start between two of our answers, plus one (100 -> 97, 20 -> 18), since two processes decide
  on what they knew one response ago. ``time_margin`` absorbs the difference in latency
  between two requests: the server counts a request somewhere between its start and its answer
  (by default it is learned from our round trips, see :mod:`katapult_async._margin`). Any
  window-long interval lies inside some ``S``-long one, so no window-long interval holds more
  than ``U`` of our starts: safe for a server counting in a sliding window and in fixed windows
  of any phase;
* at least ``S / U`` seconds have passed since the previous start's slot. This spreads the starts
  evenly instead of letting the budget go out in a burst. At that spacing the log condition never
  binds by itself: the steady rate is ``U / S`` (for 100 per 2 s: 99 / 2.02 s = 49.0 requests/s,
  98 % of the limit, at the starting margin; 99 / 2.008 s = 49.3 with 4 ms round trips).

Usage by others
---------------
``X-Ratelimit-Remaining`` is what is left of the server's window when the response was produced:
the server has counted ``L - remaining`` requests. Those beyond our own are someone else's
(another process with the same token), and each of them gets a "phantom" start in the log,
stamped now (when we first saw it, so at or after it reached the server: a phantom never frees
its slot before the request it stands for does). The shared reserve then applies for one span.

Which of our requests the server counts: those started within a window before the answered one
started (the server counted it at or after its start), less those of ours still outgoing (they may
not have arrived yet). Which phantoms still stand for a counted request: the newest of them, and
none stamped a window before the answered request started (what it stood for arrived before then
and has aged out). So a phantom of an old request never hides a new one: the others' count is
matched against the phantoms that can still stand for it, and topped up *to* it, never *by* it,
so that repeated, duplicated or out-of-order headers never add up (an older response reports
more remaining and changes nothing). A phantom expires like any start, so one stale header
holds us back by at most one span. When the configured limit is below the server's, the headroom
between the two is left to the others first. (``observe()`` without the answered request's start
credits every start in the log as counted, which can hide a few of the others'.)

While others use the token, between two of our answers they go on starting requests we have
not seen yet: about their rate times the usual time between our answers (a moving average)
plus the time margin. The shared reserve holds that many and one more, at least 2 and at most a
quarter of the limit: with two processes at 20 per second, each sees the other's newest request
one answer late, and a reserve of one would let both take the last slot.

In fixed windows the log still holds our starts of the previous window, which would hide the
others' usage of the new one. So a turnover is noticed, and from then on our starts count from
it: when the server's count falls by a quarter of the limit to a quarter below what the log
holds, or falls below our requests answered within the last window (a window that began during
a burst falls by less). (A count that falls but still matches the log is a sliding window in which
the others' requests aged out while we heard nothing: taken for a turnover, all of it would count
as the others' and stall us for a span.) Our requests still outgoing when the turnover shows
count among those starts: most of them reach the server after it. (Counted as others', each
would be a phantom holding back one start for a whole span, at every turnover.) This is why the
limiter's ``release()`` matters after every request: it ends what is outgoing. The answers of
requests sent before the turnover was noticed are then passed over: the server may have counted
them in the old window, and with jittery answers (one arriving 30 ms after the next) the old
window's count, read as the new one's, would be a window's worth of the others' requests.

429s
----
A 429 is counted, and its request stays in the log: the server counted it too. With a
``Retry-After``, every caller pauses until then (at most one span). Otherwise the log is topped up to
``L + 1`` and callers pause until the log allows a start again. While the limit is unknown, the pause
lasts until all of our recorded starts have aged out. A 429 that follows a start made after the
previous pause ended, within one span of it, shows the server does not free capacity as the log
predicts: the pause is then a whole span from now. 429s arriving during a pause (rejections of
requests already in flight) only extend it.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from itertools import repeat
from typing import Literal

from katapult_async._margin import MIN_TIME_MARGIN, LearnedMargin

__all__ = ["PRIORITY_POLL", "Budget", "Pacing", "RateLimitSource"]

RateLimitSource = Literal["configured", "headers", "429"]
"""Where the effective limit came from."""

Pacing = Literal["burst", "smooth"]
"""How the budget is spent: at once while it lasts (``"burst"``), or spread evenly (``"smooth"``)."""

_AnnouncedSource = Literal["headers", "429"]

logger = logging.getLogger("katapult_async.ratelimit")

PRIORITY_POLL = 1
"""The limiter queue's priority for task polls: after every other waiting request (0). While the
budget binds, a PATCH starts a task the run waits for; a poll only notices that one ended."""

EARLY = 1e-6
"""A sleeper may wake this much early (timer resolution, rounding); starting then is harmless."""
# Keeps ``ceil(100 * 0.03)`` at 3 despite float rounding.
_ROUNDING = 1e-9


SHARED_MIN = 2

SHARED_SPANS = 5
"""Burst pacing: spans that one sign of others on the token keeps us sharing (see _may_burst).
Two processes that take turns spend whole windows without a sign of each other."""


def _count_after(log: deque[float], cutoff: float) -> int:
    """The stamps of a sorted ``log`` after ``cutoff`` (a short scan from the old end: the
    cutoffs used lie near it)."""
    older = 0
    for stamp in log:
        if stamp > cutoff:
            break
        older += 1
    return len(log) - older


def _usable(limit: int, margin: float, least: int = 1) -> int:
    reserve = 0
    if margin > 0:
        reserve = max(least, math.ceil(limit * margin - _ROUNDING))
    return max(1, limit - reserve)


class Budget:
    """The limit, the start log and the 429 pause of one token (see the module docstring).

    Args:
        limit: A configured limit per ``window``, or None.
        window: The server's window in seconds.
        safety_margin: The reserve's share of the limit while we are alone on the token.
        shared_margin: The reserve's share while others use the token too.
        time_margin: Seconds added to the window; with ``learn_margin``, the most it may be.
        learn_margin: Make the margin twice the longest recent round trip of our own
            requests (see :meth:`end`), never below :data:`MIN_TIME_MARGIN`, and never above
            ``time_margin`` (smooth pacing) or a tenth of the window (burst pacing).
        pacing: ``"burst"``: start whenever the log has room; ``"smooth"``: also space the
            starts ``span / usable`` apart (see the module docstring).
    """

    def __init__(
        self,
        limit: int | None,
        window: float,
        *,
        safety_margin: float,
        shared_margin: float,
        time_margin: float,
        learn_margin: bool = False,
        pacing: Pacing = "smooth",
    ) -> None:
        self.configured = limit
        self.smooth = pacing == "smooth"
        self.window = window
        self.span = window + time_margin
        # Burst pacing sends dozens at once, and the last of them may take several times the
        # usual round trip: the learned margin may grow past where it starts, to a tenth of the
        # window. (Smooth pacing never lets it grow.)
        cap = time_margin if pacing == "smooth" else max(time_margin, 0.1 * window)
        self._margin = (
            LearnedMargin(cap) if learn_margin and time_margin > MIN_TIME_MARGIN else None
        )
        self._margins = (safety_margin, max(safety_margin, shared_margin))
        self.announced: int | None = None
        self.announced_source: _AnnouncedSource | None = None
        self.limit: int | None = None
        self.source: RateLimitSource | None = None
        self._usable = (0, 0)  # alone, shared
        self._unseen = SHARED_MIN  # the least reserve while shared
        self._last_answer = -math.inf  # when Remaining was last observed
        self._answer_gap = 0.0  # the mean time between two observations (moving average)
        # Start times in the last ``span`` seconds, ours and phantom, sorted.
        self.starts: deque[float] = deque()
        self.last_start = -math.inf  # the slot of our own last start (phantoms excluded)
        self.pause_until = -math.inf
        self.last_pause_end: float | None = None
        self.shared_until = -math.inf  # others were seen on the token: shared reserve until then
        self._careful_until = -math.inf  # burst pacing spends with care (_may_burst) until then
        # Since the server's count last fell at once (a fixed window turning over): our starts
        # (``_own_since_reset``) and the lowest Remaining seen (``_low_remaining``).
        self._own_since_reset = 0
        # The phantoms in ``starts`` (sorted), and how many of the newest of them stand for
        # requests of others that the server still counts (see :meth:`observe_remaining`).
        self._phantoms: deque[float] = deque()
        self._matched = 0
        self._own: deque[float] = deque()  # our own starts in the last ``span``, sorted
        self.outgoing = 0  # our requests started and not yet ended (see :meth:`end`)
        self._low_remaining = math.inf
        self._turned_at = -math.inf  # when a fixed window's turnover was last noticed
        # Burst pacing while others use the token: when a slot of the log last freed, and the
        # start of the newest request whose Remaining we have read (is our view of it fresh?).
        self._freed_at = -math.inf
        self._answered_start = -math.inf
        self._fresh_free = 0  # what was left then, less the reserve
        # Burst pacing: (answered at, started at) of our requests in the last span, in the
        # order answered: which ones surely reached the server before a given request started.
        self._ends: deque[tuple[float, float]] = deque()
        self.headerless = False  # an answer came without X-Ratelimit-Remaining
        self.rate_limited = 0
        self._update_limit()

    # --- the limit --------------------------------------------------------------------------

    def announce(self, limit: int, source: _AnnouncedSource) -> None:
        """A limit named by the server (headers or a 429 body)."""
        if source == "429" and self.announced_source == "headers":
            return  # the headers are the better source; a changed limit shows there too
        if limit != self.announced:
            self.announced = limit
            self.announced_source = source
            self._update_limit()

    def _update_limit(self) -> None:
        configured, announced = self.configured, self.announced
        if configured is not None and (announced is None or configured <= announced):
            self.limit, self.source = configured, "configured"
        elif announced is not None:
            self.limit, self.source = announced, self.announced_source
        else:
            self.limit, self.source = None, None
            return
        limit = self.limit
        logger.info("rate limit: %d requests per %gs (from %s)", limit, self.window, self.source)
        self._usable = (_usable(limit, self._margins[0]), self._shared_usable(limit))

    def _shared_usable(self, limit: int) -> int:
        if self.smooth:
            return _usable(limit, self._margins[1], self._unseen)
        # Burst: the halving of _burst_cap keeps the others' unseen requests few; the reserve
        # covers the one probe each process may send on stale news.
        reserve = max(SHARED_MIN, math.ceil(limit * self._margins[1] - _ROUNDING))
        return max(1, limit - reserve)

    def usable(self, now: float) -> int:
        """Starts allowed per span now (the reserve depends on whether others were seen)."""
        return self._usable[1] if now < self.shared_until else self._usable[0]

    # --- starts -----------------------------------------------------------------------------

    def ready_at(self, now: float) -> float:
        """The earliest time the next start is allowed (the pause end while the limit is unknown)."""
        if self.limit is None:
            return self.pause_until
        self.trim(now)
        usable = self.usable(now)
        ready_at = self.pause_until
        if self.smooth:
            ready_at = max(ready_at, self.last_start + self.span / usable)
        starts = self.starts
        if len(starts) >= usable:
            ready_at = max(ready_at, starts[-usable] + self.span)
        if (
            not self.smooth
            and now < max(self.shared_until, self._careful_until)
            and not self._may_burst(now)
        ):
            return math.inf  # wait for an answer (see :meth:`_may_burst`)
        return ready_at

    def _may_burst(self, now: float) -> bool:
        """Burst pacing while others use the token: may one more of ours start now?

        Only while fewer of ours are in flight than half of what was left at the newest answer
        (less the reserve): two processes that see the same budget left take no more than all
        of it between them, and each answer halves what is left again, so it is spent in a few
        round trips. (All of ours in flight count, even those the server counted already:
        started with the one answered, it cannot say which.) And only one at a time once a slot
        of the others' (a phantom) has freed since the newest request we heard back about
        started: they may have taken it again already, and only an answer can say. (Our own
        slots free in our log before they do in anyone else's: their phantoms of our requests
        are stamped when seen, after the request reached the server.)
        """
        if self._last_answer == -math.inf:
            # No Remaining read yet. After a 429 (the budget spent by others before we came),
            # one at a time until an answer says what is left; with no headers at all, the log
            # alone paces, as it always did.
            return self.outgoing < 1 if self.rate_limited and not self.headerless else True
        stale = now - self._last_answer > self.span - self.window
        if stale or self._freed_at > self._answered_start:
            return self.outgoing < 1
        return self.outgoing < max(1, self._fresh_free // 3)

    def remaining(self, now: float) -> int | None:
        """Starts the log allows right now (None while the limit is unknown)."""
        if self.limit is None:
            return None
        self.trim(now)
        return max(0, self.usable(now) - len(self.starts))

    def refills_at(self, now: float) -> float | None:
        """When the log next frees a slot (None if it holds none, or the limit is unknown)."""
        if self.limit is None:
            return None
        self.trim(now)
        return self.starts[0] + self.span if self.starts else None

    def record(self, now: float, slot: float | None = None) -> None:
        """Log a start at ``now``; the next one is spaced from ``slot`` (default ``now``)."""
        starts = self.starts
        if not self.smooth and self.last_start == -math.inf:
            # Our first start: whether others spend this budget too, only answers can say, and
            # they may be starting right now as well. Spend with care for the first span (see
            # _may_burst; the reserve only once they show).
            self._careful_until = now + self.span
        starts.append(now)
        self._own.append(now)
        self._own_since_reset += 1
        self.outgoing += 1
        if slot is None or self.limit is None:
            self.last_start = now
        else:
            # Space the next start from this one's slot, not from when the sleeper woke: timers
            # fire late (whole milliseconds), and at short spacings that lateness would add up to
            # a lower rate. The catch-up is at most one spacing, and the log still caps windows.
            spacing = self.span / self.usable(now)
            self.last_start = max(min(slot, now), now - spacing)
        if starts[0] <= now - self.span:
            self.trim(now)

    def end(self, started: float | None = None, now: float | None = None) -> None:
        """One of our requests, started at ``started``, has ended (answered or not) at ``now``.

        With ``learn_margin``, its round trip teaches the time margin (see
        :mod:`katapult_async._margin`).
        """
        if self.outgoing:
            self.outgoing -= 1
        if not self.smooth and started is not None and now is not None:
            self._ends.append((now, started))
        if self._margin is not None and started is not None and now is not None:
            margin = self._margin.add(now - started)
            if margin is not None:
                self.span = self.window + margin

    def trim(self, now: float) -> None:
        cutoff = now - self.span
        starts = self.starts
        while starts and starts[0] <= cutoff:
            starts.popleft()
        own = self._own
        while own and own[0] <= cutoff:
            own.popleft()
        ends = self._ends
        while ends and ends[0][0] <= cutoff:
            ends.popleft()
        phantoms = self._phantoms
        if phantoms and phantoms[0] <= cutoff:
            while phantoms and phantoms[0] <= cutoff:
                freed = phantoms.popleft()
            self._matched = min(self._matched, len(phantoms))
            # The others' slot is free in our view; they may have reused it already (see
            # _burst_cap). Our own slots free in our view first: no such doubt.
            self._freed_at = max(self._freed_at, freed + self.span)

    def _add_phantoms(self, count: int, now: float) -> None:
        self.starts.extend(repeat(now, count))
        self._phantoms.extend(repeat(now, count))

    def top_up(self, count: int, now: float) -> int:
        """Adds phantom starts at ``now`` until the (trimmed) log holds ``count``; returns how many."""
        missing = count - len(self.starts)
        if missing > 0:
            self._add_phantoms(missing, now)
        return max(0, missing)

    def in_window(self, now: float) -> int:
        """Starts (ours and phantoms) in the last ``window`` seconds."""
        self.trim(now)
        cutoff = now - self.window
        count = 0
        for started in reversed(self.starts):
            if started <= cutoff:
                break
            count += 1
        return count

    # --- what the server says ---------------------------------------------------------------

    def observe_remaining(self, remaining: int, now: float, started: float | None = None) -> None:
        """``X-Ratelimit-Remaining`` of a response: what the others' requests are.

        ``started`` is when the request answered began (the server counted at or after it).
        Without it, the model cannot tell which of our requests and phantoms the count holds,
        and credits all of them, as a caller that only reads headers would.
        """
        limit = self.limit
        if limit is None:
            return
        self.headerless = False
        # The server's count, against our effective limit: when that is a configured limit below
        # the server's, the difference is headroom that others may use first.
        remaining = max(remaining, 0)
        used = limit - remaining
        self.trim(now)
        if not self.smooth and started is not None and started < self._answered_start:
            # Burst pacing: dozens in flight at once, answered in any order. An answer to a
            # request started before one already read says nothing newer (and, read after it,
            # its higher Remaining would look like a window turning over).
            return
        if started is not None and started < self._turned_at:
            # Sent before the turnover was noticed: the server may have counted it in the old
            # window, whose count, taken for the new one's, would read as a window's worth of
            # the others' requests (and stall us for a span). Only later requests tell.
            return
        self._detect_turnover(remaining, used, now, started)
        if started is not None and started >= self._answered_start:
            self._answered_start = started
            self._fresh_free = self.usable(now) - used
        previous, self._last_answer = self._last_answer, now
        if previous > -math.inf:
            self._answer_gap += (now - previous - self._answer_gap) / 8
        if used <= 0:
            return
        # Our requests the server counts: those started in its window before this one (and
        # since the last turnover, for fixed windows, where the log still holds the previous one).
        cutoff = now - self.span if started is None else started - self.window
        # (Burst: a burst's first ones a window ago may still count: its last ones arrived a
        # round trip later than its first. So ours from a span before.)
        mine = cutoff if self.smooth or started is None else started - self.span
        counted = min(_count_after(self._own, mine), self._own_since_reset)
        sure = counted
        if started is not None:
            if self.smooth:
                # The others of ours still outgoing may not have reached the server yet.
                sure = max(0, counted - max(0, self.outgoing - 1))
            elif now < self.shared_until:
                # Burst pacing has dozens of ours outgoing at once: those started before this
                # one (or with it) have reached the server before it, those started after have
                # not. (Counting every one outgoing as not arrived, most would be phantoms, each
                # holding a slot for a span.)
                sure = max(0, counted - _count_after(self._own, started + EARLY))
            # (Burst pacing alone on the token: every one of ours may have been counted, so
            # only what is beyond all of them is the others'. A request of ours that overtook
            # this one is no phantom then.)
            # A phantom stamped a window before this request started stands for a request that
            # arrived before then, which the server no longer counts. Matched still, it would
            # hide a new request of the others, and free its slot a window too early.
            self._matched = min(self._matched, _count_after(self._phantoms, cutoff))
        # The others' requests the server counts, against the newest phantoms (which stand for
        # them): top up, never down, so repeated or out-of-order headers never add up.
        others = max(0, used - sure)
        missing = others - self._matched
        if missing > 0:
            beyond_log = used - len(self.starts)
            self._add_phantoms(missing, now)
            self._matched += missing
            # Two or more beyond all our starts: someone else uses the token. (One may be ours,
            # counted after a turnover; our outgoing requests may have reached the server.)
            if beyond_log > 0 or used - counted >= 2:
                self.shared_until = now + self.span
        if not self.smooth and (used > counted or missing > 0):
            # More counted than all of ours: someone else spends this budget now. Keep sharing
            # for a few spans from the last sign of them: as a window comes back, our older
            # requests in the log can hide theirs for a few round trips, the very moment both
            # of us start spending it again.
            self.shared_until = now + SHARED_SPANS * self.span
        if others:
            # Between two of our answers the others go on starting requests we have not seen:
            # at their rate, over the usual time between our answers (and a round trip or two).
            # The shared reserve holds that many and one more, up to a quarter of the limit.
            stale = self._answer_gap + self.span - self.window
            unseen = max(SHARED_MIN, min(limit // 4, math.ceil(others * stale / self.window) + 1))
            if unseen != self._unseen:
                self._unseen = unseen
                self._usable = (self._usable[0], self._shared_usable(limit))

    def _detect_turnover(
        self, remaining: int, used: int, now: float, started: float | None
    ) -> None:
        """Notices a fixed window turning over; from then on, our starts count from zero."""
        turned = False
        limit = used + remaining
        jump = max(2, limit // 4)
        # What a sliding window surely still counts: the starts a window (less the time margin)
        # before this request's. (Near the end of a burst a window before, the log holds many
        # starts the server has just let go; taken for counted, they would read as a turnover.)
        recent = (now if started is None else started) - self.window + (self.span - self.window)
        if remaining >= self._low_remaining + jump:
            # The server's count fell by a quarter of the limit. If it is also a quarter below
            # what the log holds for the last span, a fixed window turned over. (Otherwise the
            # log explains the fall: a sliding window, where the others' usage aged out while we
            # heard nothing. Taken for a turnover, the whole count would be taken for the
            # others' and stall us for a span.)
            # (And none from before the last turnover: that one would be seen again.)
            logged = _count_after(self.starts, max(recent, self._turned_at))
            if started is not None:  # those started with it may have arrived after it: not these
                logged -= _count_after(self.starts, started - EARLY) - 1
            turned = logged - used >= jump
            self._low_remaining = remaining
        else:
            self._low_remaining = min(self._low_remaining, remaining)
        if started is not None and not turned and self._own_since_reset > self.outgoing:
            # The server counts fewer than our requests answered in the last window, started
            # before this one: only fixed windows forget those, so one turned over, by less than
            # a quarter of the limit (early in a window). Counted as ours, the requests of the
            # previous window would hide as many of the others'.
            if self.smooth:
                after = _count_after(self._own, started - EARLY) - 1
                answered = min(_count_after(self._own, recent), self._own_since_reset) - after
                answered -= max(0, self.outgoing - 1 - after)
            else:
                # Burst: dozens in flight, arriving in any order. Only ours answered before
                # this one started surely reached the server before it (and since the last
                # turnover: that one would be seen again).
                since = max(recent, self._turned_at)
                answered = 0
                for ended, began in self._ends:
                    if ended >= started:
                        break
                    if began > since:
                        answered += 1
            turned = (self.announced or limit) - remaining < answered  # the server's count
            if turned:
                self._low_remaining = remaining
        if turned:
            # What the server counts from now on arrived after the turnover: this response's
            # request, and perhaps the others of ours still outgoing. They count as ours:
            # counted as others', each would be a phantom holding back a start for a whole span,
            # at every turnover.
            self._own_since_reset = min(self.outgoing, len(self.starts))
            if not self.smooth and started is not None:
                # Burst: ours arrive in any order, and may have been answered before this one
                # though they reached the server after the turnover too: all of ours started
                # from a time margin before this one count as the new window's (a few too many
                # hide as many of the others' for a round trip; too few would be phantoms).
                margin = self.span - self.window
                self._own_since_reset = _count_after(self._own, started - margin - EARLY)
            self._matched = 0
            self._turned_at = now

    def observe_rate_limited(
        self, total_permitted: int | None, retry_after: float | None, now: float
    ) -> None:
        """A 429: learn the limit, and pause every start (see the module docstring)."""
        self.rate_limited += 1
        if not self.smooth:
            # The budget was spent before we knew: most likely by someone else on the token.
            self.shared_until = max(self.shared_until, now + SHARED_SPANS * self.span)
        if total_permitted is not None and total_permitted > 0:
            self.announce(total_permitted, "429")
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            # Honoured up to one span: after that any server's window has turned over, and a
            # bogus hour-long Retry-After must not stall a bulk job.
            self.pause_until = max(self.pause_until, now + min(retry_after, self.span))
            self.last_pause_end = self.pause_until
            logger.info(
                "rate limit reached, Retry-After %.2fs: pausing all requests for %.2fs",
                retry_after,
                self.pause_until - now,
            )
            return
        # Did we start a request after the last pause ended, and still get rejected?
        last_pause_end = self.last_pause_end
        repeated = (
            last_pause_end is not None
            and now >= self.pause_until
            and now - last_pause_end < self.span
            and self.last_start >= last_pause_end - EARLY
        )
        self.trim(now)
        starts = self.starts
        limit = self.limit
        if limit is None:
            resume = (starts[0] if starts else now) + self.span
        else:
            self.top_up(limit + 1, now)
            resume = starts[-self.usable(now)] + self.span
        if repeated:
            resume = max(resume, now + self.span)
        self.pause_until = max(self.pause_until, resume)
        self.last_pause_end = self.pause_until
        logger.info(
            "rate limit reached (limit %s per %gs): pausing all requests for %.2fs",
            self.limit,
            self.window,
            self.pause_until - now,
        )
