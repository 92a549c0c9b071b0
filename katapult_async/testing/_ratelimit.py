"""Per-token request counting for the simulated rate limit."""

from __future__ import annotations

import collections
import math

from ._config import RateLimitMode


class RateCounter:
    """Counts requests per token in fixed (clock-aligned) or sliding windows.

    Every call to :meth:`hit` counts, whether or not the request is then refused, as the live API
    counts every request made with a token.
    """

    def __init__(self, window: float, mode: RateLimitMode) -> None:
        self._window = window
        self._sliding = mode == "sliding"
        self._fixed: dict[str, list[int]] = {}
        self._times: dict[str, collections.deque[float]] = {}

    def hit(self, key: str, now: float) -> int:
        """Count one request for ``key`` at clock time ``now``.

        Returns:
            The number of requests in the current window, this one included.
        """
        if self._sliding:
            times = self._times.get(key)
            if times is None:
                times = self._times[key] = collections.deque()
            horizon = now - self._window
            while times and times[0] <= horizon:
                times.popleft()
            times.append(now)
            return len(times)
        index = math.floor(now / self._window)
        slot = self._fixed.get(key)
        if slot is None or slot[0] != index:
            self._fixed[key] = [index, 1]
            return 1
        slot[1] += 1
        return slot[1]

    def reset(self) -> None:
        """Forget every count."""
        self._fixed.clear()
        self._times.clear()
