"""Noticing a fixed rate-limit window turning over, from what ``X-Ratelimit-Remaining`` says.
Pure: no clock of its own, every time is passed in. Used by :class:`~katapult_async._budget.Budget`.

In fixed windows the start log still holds our starts of the previous window, which would hide
the others' usage of the new one, so a turnover is noticed, and from then on our starts count
from it: when the server's count falls by a quarter of the limit to a quarter below what the log
holds, or falls below our requests surely counted within the last window (a window that began
during a burst falls by less). A count that falls but still matches the log is a sliding window
in which the others' requests aged out while we heard nothing: taken for a turnover, all of it
would count as the others' and stall us for a span.
"""

from __future__ import annotations

import math

from katapult_async._startlog import StartLog, count_after

__all__ = ["EARLY", "TurnoverWatch"]

EARLY = 1e-6
"""A sleeper may wake this much early (timer resolution, rounding); starting then is harmless.
Also the tie of two starts at one instant."""


class TurnoverWatch:
    """The lowest ``Remaining`` seen since the last turnover, and when that turnover was noticed.

    Attributes:
        turned_at: When the last turnover was noticed (answers to requests started before it
            are passed over: the server may have counted them in the old window).
    """

    def __init__(self) -> None:
        self._low_remaining = math.inf
        self.turned_at = -math.inf

    def turned(
        self,
        log: StartLog,
        remaining: int,
        used: int,
        now: float,
        started: float | None,
        *,
        window: float,
        span: float,
        own_since_reset: int,
        outgoing: int,
        announced: int | None,
        burst: bool,
    ) -> bool:
        """Whether this answer shows a fixed window turned over (and remember that it did).

        ``used`` and ``remaining`` are the server's count and what is left, ``started`` when the
        answered request started (None: unknown), ``own_since_reset`` our starts counted since
        the last turnover, ``outgoing`` ours not yet answered.
        """
        turned = False
        limit = used + remaining
        jump = max(2, limit // 4)
        # What a sliding window surely still counts: the starts a window (less the time margin)
        # before this request's. (Near the end of a burst a window before, the log holds many
        # starts the server has just let go; taken for counted, they would read as a turnover.)
        recent = (now if started is None else started) - window + (span - window)
        if remaining >= self._low_remaining + jump:
            # The server's count fell by a quarter of the limit. If it is also a quarter below
            # what the log holds, a fixed window turned over; otherwise the log explains it.
            # (None from before the last turnover: that one would be seen again.)
            logged = count_after(log.starts, max(recent, self.turned_at))
            if started is not None:  # those started with it may have arrived after it: not these
                logged -= count_after(log.starts, started - EARLY) - 1
            turned = logged - used >= jump
            self._low_remaining = remaining
        else:
            self._low_remaining = min(self._low_remaining, remaining)
        if started is not None and not turned and own_since_reset > outgoing:
            # The server counts fewer than our requests answered in the last window, started
            # before this one: only fixed windows forget those, so one turned over, by less than
            # a quarter of the limit (early in a window). Counted as ours, the requests of the
            # previous window would hide as many of the others'.
            if burst:
                # Dozens in flight, arriving in any order: only ours answered before this one
                # started surely reached the server before it (and since the last turnover).
                answered = log.answered_before(started, max(recent, self.turned_at))
            else:
                after = count_after(log.own, started - EARLY) - 1
                answered = min(count_after(log.own, recent), own_since_reset) - after
                answered -= max(0, outgoing - 1 - after)
            turned = (announced or limit) - remaining < answered  # the server's count
            if turned:
                self._low_remaining = remaining
        if turned:
            self.turned_at = now
        return turned
