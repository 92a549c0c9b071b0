"""The pure model behind :class:`~katapult_async._ratelimit.RateLimiter`: which limit holds, and
when the next request may start. No I/O, no asyncio, no clock of its own: every time is passed in,
so it is tested in virtual time (``tests/test_budget.py``). The maintainers' account of every rule
and why it is so is in ``docs/rate-limits.md`` ("How the budget model decides"); in short:

* **The limit** ``L``, best source first: a configured one, ``X-Ratelimit-Permitted``, the first
  429's ``detail.total_permitted``. A smaller announced limit lowers a configured one.
* **The log** (:mod:`katapult_async._startlog`) holds every start of the last span (the window
  plus a time margin learned from round trips, :mod:`katapult_async._margin`): ours, and
  phantoms for the others' requests that ``X-Ratelimit-Remaining`` revealed. A start is allowed
  while the log holds fewer than ``U = L - reserve``: safe for a sliding window and for fixed
  windows of any phase, since any window-long interval lies inside some span.
* **Burst pacing** (the default) starts whenever the log has room: a job that fits the budget
  goes out at once; a bigger one as the oldest starts age out. For the first span it takes care
  (:meth:`Budget._may_burst`: at most a third of what was left at the newest answer in flight,
  one at a time on stale news); while others use the token it spreads as smooth pacing does.
  **Smooth pacing** also spaces the starts ``span / U`` apart, the even spreading of earlier
  releases, with a reserve of 1 % (3 % while others are seen).
* **Others on the token**: the server's count beyond our own requests it can have counted gets
  phantoms, topped up *to* it, never *by* it (stale, repeated, out-of-order headers never add
  up); fixed windows turning over are noticed (:mod:`katapult_async._turnover`) so that our
  previous window's starts do not hide the others' usage of the new one.
* **A 429** pauses every start: until ``Retry-After`` (at most a span), else until the log,
  topped up to ``L + 1``, allows a start again (a whole span if the last pause did not help).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Literal

from katapult_async._margin import MIN_TIME_MARGIN, LearnedMargin
from katapult_async._startlog import StartLog, count_after
from katapult_async._turnover import EARLY, TurnoverWatch

__all__ = ["EARLY", "PRIORITY_POLL", "Budget", "Pacing", "RateLimitSource"]

RateLimitSource = Literal["configured", "headers", "429"]
"""Where the effective limit came from."""

Pacing = Literal["burst", "smooth"]
"""How the budget is spent: at once while it lasts (``"burst"``), or spread evenly (``"smooth"``)."""

_AnnouncedSource = Literal["headers", "429"]

logger = logging.getLogger("katapult_async.ratelimit")

PRIORITY_POLL = 1
"""The limiter queue's priority for task polls: after every other waiting request (0). While the
budget binds, a PATCH starts a task the run waits for; a poll only notices that one ended."""

# Keeps ``ceil(100 * 0.03)`` at 3 despite float rounding.
_ROUNDING = 1e-9


SHARED_MIN = 2

SHARED_SPANS = 5
"""Burst pacing: spans that one sign of others on the token keeps us sharing (see _may_burst).
Two processes that take turns spend whole windows without a sign of each other."""


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
            ``time_margin`` (smooth pacing) or half the window (burst pacing).
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
        # Burst pacing sends dozens at once, and the last of them may reach the server several
        # usual round trips after its start: the learned margin (twice the longest recent round
        # trip, which bounds that delay) may grow past where it starts, up to half the window.
        # (Smooth pacing never lets it grow.)
        cap = time_margin if pacing == "smooth" else max(time_margin, 0.5 * window)
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
        self.log = StartLog()
        self.last_start = -math.inf  # the slot of our own last start (phantoms excluded)
        self.pause_until = -math.inf
        self.last_pause_end: float | None = None
        self.shared_until = -math.inf  # others were seen on the token: shared reserve until then
        self._careful_until = -math.inf  # burst pacing spends with care (_may_burst) until then
        # Since the server's count last fell at once (a fixed window turning over): our starts
        # (``_own_since_reset``).
        self._own_since_reset = 0
        self.outgoing = 0  # our requests started and not yet ended (see :meth:`end`)
        self._turnover = TurnoverWatch()
        # Burst pacing while others use the token: the start of the newest request whose
        # Remaining we have read (is our view of it fresh?).
        self._answered_start = -math.inf
        self._fresh_free = 0  # what was left then, less the reserve
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
        # While others use the token both pacings spread (see ready_at), with the same reserve:
        # ``shared_margin``, and at least what the others start between two of our answers.
        return _usable(limit, self._margins[1], self._unseen)

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
        # Burst pacing spreads too while others use the token: bursts of two processes that
        # cannot see each other's requests in flight overshoot under load, and they would
        # share the budget at the same pace anyway.
        spread = self.smooth or now < self.shared_until
        if spread:
            ready_at = max(ready_at, self.last_start + self.span / usable)
        starts = self.starts
        if len(starts) >= usable:
            ready_at = max(ready_at, starts[-usable] + self.span)
        if not spread and now < self._careful_until and not self._may_burst(now):
            return math.inf  # wait for an answer (see :meth:`_may_burst`)
        return ready_at

    def _may_burst(self, now: float) -> bool:
        """Burst pacing in a run's first span, before others are known: may one more start now?

        Only while fewer of ours are in flight than a third of what was left at the newest answer
        (less the reserve): processes that see the same budget left take no more than all of it
        between them, and each answer cuts what is left again, so it is spent in a few round
        trips. (All of ours in flight count, even those the server counted already:
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
        if stale or self.log.phantom_freed_at > self._answered_start:
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
        self.log.add_own(now)
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
        if not self.smooth and started is not None and now is not None and self.limit is not None:
            # (Only read once a limit is known: kept before, a run without one would hold the
            # answers of a whole span, 100,000s at full speed.)
            self.log.answered(started, now)
        if self._margin is not None and started is not None and now is not None:
            margin = self._margin.add(now - started)
            if margin is not None:
                self.span = self.window + margin

    @property
    def starts(self) -> deque[float]:
        """Every start in the log, ours and phantom, sorted."""
        return self.log.starts

    def trim(self, now: float) -> None:
        """Forgets what started a span or more ago."""
        self.log.trim(now - self.span, self.span)

    def top_up(self, count: int, now: float) -> int:
        """Adds phantom starts at ``now`` until the (trimmed) log holds ``count``; returns how many."""
        return self.log.top_up(count, now)

    def in_window(self, now: float) -> int:
        """Starts (ours and phantoms) in the last ``window`` seconds."""
        self.trim(now)
        return self.log.count_since(now - self.window)

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
        spread = self.smooth or now < self.shared_until  # (see ready_at)
        if not spread and started is not None and started < self._answered_start:
            # Burst pacing: dozens in flight at once, answered in any order. An answer to a
            # request started before one already read says nothing newer (and, read after it,
            # its higher Remaining would look like a window turning over).
            return
        if started is not None and started < self._turnover.turned_at:
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
        mine = cutoff if spread or started is None else started - self.span
        counted = min(count_after(self.log.own, mine), self._own_since_reset)
        sure = counted
        if started is not None:
            if spread:
                # The others of ours still outgoing may not have reached the server yet. (Burst
                # pacing alone has dozens outgoing, most of them counted already: taken for the
                # others', each would be a phantom holding a slot for a span. Sharing, it
                # spreads like smooth pacing, with few outgoing.)
                sure = max(0, counted - max(0, self.outgoing - 1))
            # (Burst pacing alone on the token: every one of ours may have been counted, so
            # only what is beyond all of them is the others'. A request of ours that overtook
            # this one is no phantom then.)
            # A phantom stamped a window before this request started stands for a request that
            # arrived before then, which the server no longer counts. Matched still, it would
            # hide a new request of the others, and free its slot a window too early.
            self.log.matched = min(self.log.matched, count_after(self.log.phantoms, cutoff))
        # The others' requests the server counts, against the newest phantoms (which stand for
        # them): top up, never down, so repeated or out-of-order headers never add up.
        others = max(0, used - sure)
        missing = others - self.log.matched
        if missing > 0:
            beyond_log = used - len(self.starts)
            self.log.add_phantoms(missing, now)
            self.log.matched += missing
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
        """Notices a fixed window turning over (see :mod:`katapult_async._turnover`); from then
        on, our starts count from zero."""
        if not self._turnover.turned(
            self.log,
            remaining,
            used,
            now,
            started,
            window=self.window,
            span=self.span,
            own_since_reset=self._own_since_reset,
            outgoing=self.outgoing,
            announced=self.announced,
            burst=not (self.smooth or now < self.shared_until),
        ):
            return
        # What the server counts from now on arrived after the turnover: this response's
        # request, and perhaps the others of ours still outgoing. They count as ours: counted as
        # others', each would be a phantom holding back a start for a whole span, at every
        # turnover.
        self._own_since_reset = min(self.outgoing, len(self.starts))
        if not self.smooth and started is not None and now >= self.shared_until:
            # Burst, alone on the token: ours arrive in any order, and may have been answered
            # before this one though they reached the server after the turnover too: all of ours
            # started from a time margin before this one count as the new window's. (Too few
            # would be phantoms that stall us; too many could hide the others' requests for a
            # round trip, which is why this is only done while no others are seen.)
            margin = self.span - self.window
            self._own_since_reset = count_after(self.log.own, started - margin - EARLY)
        self.log.matched = 0

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
