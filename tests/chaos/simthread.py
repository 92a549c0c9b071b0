"""A :class:`KatapultSimulator` serving from its own thread and event loop.

Tests that inspect their own event loop (no task left behind, nothing unclosed) or that run code
calling ``asyncio.run`` themselves (the CLI) need the simulator's server tasks elsewhere.
Everything that touches the simulator's state goes through :meth:`SimulatorThread.call`, which runs
it on the simulator's loop, so the two threads never share its data structures.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from katapult_async.testing import KatapultSimulator, RecordedRequest

T = TypeVar("T")


class SimulatorThread:
    """Start with ``with SimulatorThread(**options) as sim_thread:``; options as the simulator's."""

    def __init__(self, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.sim = KatapultSimulator(**options)

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        try:
            self._await(self.sim.start())
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._await(self._close())
        finally:
            self._stop()

    async def _close(self) -> None:
        await self.sim.close()
        # aiohttp cancels the handlers still busy (a slow response asleep) as it shuts down, but
        # they end on later loop iterations: let them, before the loop stops for good.
        left = asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]
        for task in left:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*left, return_exceptions=True), 5)

    def _stop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _await(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the simulator's loop and return its result."""

        async def run() -> T:
            return fn(*args, **kwargs)

        result: T = self._await(run())
        return result

    # Shorthands for what tests use most.

    @property
    def base_url(self) -> str:
        return self.sim.base_url

    @property
    def token(self) -> str:
        return self.sim.token

    def add_interfaces(self, count: int, **options: Any) -> list[str]:
        return self.call(self.sim.add_interfaces, count, **options)

    def inject(self, kind: Any, **options: Any) -> None:
        self.call(self.sim.inject, kind, **options)

    def requests(self) -> list[RecordedRequest]:
        return self.call(lambda: self.sim.requests)

    def profile_of(self, interface_id: str) -> str:
        return self.call(lambda: self.sim.interfaces[interface_id].speed_profile_id)
