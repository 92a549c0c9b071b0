"""Types the simulator's layers share, kept below them so that every import points down.

:class:`Call` is one API request in flight: :mod:`._api` fills it in, :mod:`._recorder` logs it.
:class:`SimulatorControls` is what the admin routes (:mod:`._admin`) use of a
:class:`~._simulator.KatapultSimulator`, which builds them: a protocol, so that ``_admin`` need not
import the module that imports it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Protocol

from ._args import SimulatedAPIError
from ._config import SimulatorConfig
from ._endpoints import Endpoint
from ._faults import FaultKind, FaultRule
from ._model import (
    ApiToken,
    RecordedRequest,
    SimulatedTask,
    SimulatorStats,
    VirtualMachine,
)


class Call:
    """One API request in flight, as far as it has been processed."""

    __slots__ = (
        "at",
        "endpoint",
        "error",
        "fault",
        "headers",
        "identity",
        "method",
        "path",
        "query",
        "reply_headers",
        "route_value",
        "token",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        at: float,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.at = at
        self.endpoint: Endpoint | None = None
        self.route_value = ""
        self.token: str | None = None
        self.identity: ApiToken | None = None
        self.error: SimulatedAPIError | None = None
        self.fault: FaultRule | None = None
        self.reply_headers = {"X-Request-Id": str(uuid.uuid4())}


class SimulatorControls(Protocol):
    """The state and controls of a simulator that its admin routes serve (see ``KatapultSimulator``)."""

    @property
    def config(self) -> SimulatorConfig: ...

    @property
    def stats(self) -> SimulatorStats: ...

    @property
    def tasks(self) -> Mapping[str, SimulatedTask]: ...

    @property
    def requests(self) -> list[RecordedRequest]: ...

    @property
    def faults(self) -> tuple[FaultRule, ...]: ...

    def to_wall(self, clock_time: float) -> float: ...

    def clear_requests(self) -> None: ...

    def reset_stats(self) -> None: ...

    def clear_faults(self) -> None: ...

    def add_interfaces(
        self, count: int, *, speed_profile: str = ..., vm_id: str | None = ...
    ) -> list[str]: ...

    def add_virtual_machine(
        self,
        name: str | None = ...,
        *,
        fqdn: str | None = ...,
        annotations: Mapping[str, str] | Iterable[tuple[str, str]] | None = ...,
        organization_id: str | None = ...,
    ) -> VirtualMachine: ...

    def inject(
        self,
        kind: FaultKind | str,
        *,
        times: int | None = ...,
        method: str | None = ...,
        path: str | None = ...,
        probability: float = ...,
        delay: float = ...,
        retry_after: float | str | None = ...,
        total_permitted: int | None = ...,
    ) -> FaultRule: ...
