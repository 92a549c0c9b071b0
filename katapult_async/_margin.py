"""The rate limiter's time margin: how much longer than the server's window its start log must
look back. Pure: round trips are passed in.

The server counts a request somewhere between its start and its answer, so a log over
``window + the longest round trip`` holds every request of ours that any server window can count.
By default the margin starts at :func:`default_time_margin`; :class:`LearnedMargin` then makes it
twice the longest round trip of the last 64 to 128 requests, never below :data:`MIN_TIME_MARGIN`
and never above where it started.
"""

from __future__ import annotations

__all__ = ["MIN_TIME_MARGIN", "LearnedMargin", "default_time_margin"]

MIN_TIME_MARGIN = 0.005
"""The least the learned time margin shrinks to (seconds): a few timer ticks."""
_RTT_BLOCK = 64  # round trips per block of the running maximum
_RTT_MIN_SAMPLES = 16  # round trips seen before the margin is learned from them


def default_time_margin(window: float) -> float:
    """Seconds added to the window by default, at most: ``max(0.02, 0.01 * window)``."""
    return max(0.02, 0.01 * window)


class LearnedMargin:
    """Twice the longest recent round trip, between :data:`MIN_TIME_MARGIN` and ``cap``."""

    def __init__(self, cap: float) -> None:
        self._cap = cap
        # The longest round trip in the current and the previous block of _RTT_BLOCK.
        self._longest = self._longest_before = 0.0
        self._count = 0

    def add(self, rtt: float) -> float | None:
        """Learn one round trip; return the margin, or None while too few have been seen."""
        if rtt > self._longest:
            self._longest = rtt
        self._count += 1
        if self._count % _RTT_BLOCK == 0:
            self._longest_before, self._longest = self._longest, 0.0
        if self._count < _RTT_MIN_SAMPLES:
            return None
        longest = max(self._longest, self._longest_before)
        return min(self._cap, max(MIN_TIME_MARGIN, 2 * longest))
