"""What the bulk engine needs from a client: :class:`SupportsBulkUpdate` and its parts.

Below every other module of ``bulk/`` (they import it for their annotations); public as
``katapult_async.bulk.SupportsBulkUpdate``.
"""

from __future__ import annotations

from typing import Protocol

from katapult_async.models import NetworkInterface, NetworkInterfaceRef, SpeedProfileRef, Task

__all__ = ["SupportsBulkUpdate"]


class _RateLimitSnapshot(Protocol):
    @property
    def limit(self) -> int | None: ...

    @property
    def window(self) -> float: ...

    @property
    def in_window(self) -> int: ...

    @property
    def rate_limited(self) -> int: ...


class _Poller(Protocol):
    async def wait(
        self, task: Task, /, *, timeout: float | None = ..., submitted_at: float | None = ...
    ) -> Task: ...

    def now(self) -> float: ...

    def expected_duration(self, name: str | None, /) -> float | None: ...


class SupportsBulkUpdate(Protocol):
    """The part of :class:`~katapult_async.client.KatapultClient` that :func:`~katapult_async.bulk.bulk_update` uses."""

    async def update_speed_profile(
        self, interface: NetworkInterfaceRef, speed_profile: SpeedProfileRef, /
    ) -> Task: ...

    async def get_task(self, task_id: str, /) -> Task: ...

    async def wait_for_task(self, task: str, /, *, task_timeout: float | None = ...) -> Task: ...

    async def get_network_interface(self, interface: NetworkInterfaceRef, /) -> NetworkInterface:
        """Used only with ``record_previous=True`` and a rollout's ``verify``."""
        ...

    @property
    def poller(self) -> _Poller: ...

    @property
    def rate_limit(self) -> _RateLimitSnapshot: ...
