"""The rate limiter's log of request starts over the last span: a pure data structure that
:class:`~katapult_async._budget.Budget` keeps and reads. No clock of its own: times are passed in.

It holds every start that counts against the budget, sorted: ours, and "phantoms" standing for
the requests of others on the token that ``X-Ratelimit-Remaining`` revealed, stamped when they
were seen. Ours and the phantoms are also kept apart, and, for burst pacing, when each of ours
was answered (which of them surely reached the server before a later one started).
"""

from __future__ import annotations

import math
from collections import deque
from itertools import repeat

__all__ = ["StartLog", "count_after"]


def count_after(log: deque[float], cutoff: float) -> int:
    """The stamps of a sorted ``log`` after ``cutoff`` (a short scan from the old end: the
    cutoffs used lie near it)."""
    older = 0
    for stamp in log:
        if stamp > cutoff:
            break
        older += 1
    return len(log) - older


class StartLog:
    """Starts in the last span, ours and phantom (see the module docstring).

    Attributes:
        starts: Every start, ours and phantom, sorted.
        own: Our own starts, sorted.
        phantoms: The phantoms' stamps, sorted.
        matched: How many of the newest phantoms stand for requests of others that the server
            still counts (the budget matches the others' count against them).
        ends: ``(answered at, started at)`` of our requests, in the order answered (kept only
            when :meth:`answered` is called: burst pacing).
        phantom_freed_at: When a phantom's slot last freed (its stamp plus the span).
        own_expired: How many of our starts have left the log, ever.
    """

    def __init__(self) -> None:
        self.starts: deque[float] = deque()
        self.own: deque[float] = deque()
        self.phantoms: deque[float] = deque()
        self.matched = 0
        self.ends: deque[tuple[float, float]] = deque()
        self.phantom_freed_at = -math.inf
        self.own_expired = 0

    def __len__(self) -> int:
        return len(self.starts)

    def add_own(self, now: float) -> None:
        """One of our requests starts at ``now``."""
        self.starts.append(now)
        self.own.append(now)

    def answered(self, started: float, now: float) -> None:
        """One of ours, started at ``started``, was answered at ``now``."""
        self.ends.append((now, started))

    def add_phantoms(self, count: int, now: float) -> None:
        """``count`` requests of others, seen at ``now``."""
        self.starts.extend(repeat(now, count))
        self.phantoms.extend(repeat(now, count))

    def top_up(self, count: int, now: float) -> int:
        """Adds phantoms at ``now`` until the log holds ``count``; returns how many."""
        missing = count - len(self.starts)
        if missing > 0:
            self.add_phantoms(missing, now)
        return max(0, missing)

    def trim(self, cutoff: float, span: float) -> None:
        """Drops what started at or before ``cutoff`` (now less the ``span``)."""
        starts = self.starts
        while starts and starts[0] <= cutoff:
            starts.popleft()
        own = self.own
        while own and own[0] <= cutoff:
            own.popleft()
            self.own_expired += 1
        ends = self.ends
        while ends and ends[0][0] <= cutoff:
            ends.popleft()
        phantoms = self.phantoms
        if phantoms and phantoms[0] <= cutoff:
            while phantoms and phantoms[0] <= cutoff:
                freed = phantoms.popleft()
            self.matched = min(self.matched, len(phantoms))
            self.phantom_freed_at = max(self.phantom_freed_at, freed + span)

    def count_since(self, cutoff: float) -> int:
        """Starts (ours and phantoms) after ``cutoff``, counted from the new end."""
        count = 0
        for started in reversed(self.starts):
            if started <= cutoff:
                break
            count += 1
        return count

    def answered_before(self, started: float, since: float) -> int:
        """Ours started after ``since`` and answered before ``started``: they surely reached
        the server before a request started at ``started`` did."""
        count = 0
        for ended, began in self.ends:
            if ended >= started:
                break
            if began > since:
                count += 1
        return count
