"""`KatapultSimulator`: the simulator's public face, built from one :class:`SimulatorConfig`.

It owns an :class:`~._api.ApiCore` (state and request handling), an :class:`~._admin.AdminApi`
and an :class:`~._http.HttpServer` that serves both, and gives tests typed access to the state,
the request log, the counters and fault injection.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from ._account import SimulatorAccount
from ._admin import ADMIN_PREFIX, AdminApi
from ._api import ApiCore
from ._config import SimulatorConfig
from ._endpoints import API_PREFIX
from ._faults import FaultKind, FaultRule
from ._http import HttpServer
from ._model import RecordedRequest, SimulatorStats

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _takes_options_of(
    source: Callable[_P, object],
) -> Callable[[Callable[..., _R]], Callable[Concatenate[Any, _P], _R]]:
    """Give a method taking ``**options`` the keyword parameters of ``source``.

    For type checkers and for :func:`inspect.signature` (and so :func:`help`), so that the
    parameters are listed once, as the fields of ``source``.
    """

    def decorate(method: Callable[..., _R]) -> Callable[Concatenate[Any, _P], _R]:
        signature = inspect.signature(source)
        self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        method.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[self_parameter, *signature.parameters.values()]
        )
        return method

    return decorate


class KatapultSimulator(SimulatorAccount):
    """A faithful Katapult Core API v1 for tests, on a real loopback socket.

    It serves the speed-profile update, task, interface and speed-profile endpoints in both URL
    styles the live API accepts, with its error codes and descriptions, rate-limit headers, task
    lifecycle and per-token rate limit, and injects faults on demand. Use it as an async context
    manager::

        async with KatapultSimulator(rate_limit=100, rate_limit_window=2.0) as sim:
            ids = sim.add_interfaces(10)
            client = ...(base_url=sim.base_url, token=sim.token)
            ...
            sim.settle()
            assert sim.interfaces[ids[0]].speed_profile_id == sim.profile_by_permalink("1gbps").id

    Semantics worth knowing:

    * An accepted update assigns the profile at once (a retry after a lost response gets 422
      ``speed_profile_already_assigned``). A task that later fails restores the previous profile,
      unless another update for the interface was accepted since. That revert is applied lazily,
      before any API request is handled and whenever ``interfaces`` or ``settle()`` is used.
    * Tasks advance with ``clock`` and need no timers: ``pending`` for ``task_start_delay``,
      then ``running`` with progress rising from 5 to 95, then ``completed`` (100) or ``failed``
      at ``created + duration`` (``sim.tasks[id].finishes_at``). The update's own response always
      shows the task ``pending``.
    * Admin endpoints under ``/_sim/`` (state, request log, faults, interfaces) need no token, are
      not rate limited and are not logged; see the module documentation of
      ``katapult_async.testing``.

    All keyword arguments are described in :class:`SimulatorConfig`.
    """

    @_takes_options_of(SimulatorConfig)
    def __init__(self, **options: Any) -> None:
        self._setup(SimulatorConfig(**options))

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> KatapultSimulator:
        """Create a simulator from a ready-made :class:`SimulatorConfig`."""
        simulator = cls.__new__(cls)
        simulator._setup(config)
        return simulator

    def _setup(self, config: SimulatorConfig) -> None:
        self._config = config
        self._core = ApiCore(config)
        self._wall_offset = config.wall_clock() - config.clock()
        admin = AdminApi(self, self._core)
        self._server = HttpServer(self._core, admin, config.host, config.port, config.latency)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening. Does nothing if already started."""
        await self._server.start()

    async def close(self) -> None:
        """Stop listening and close open connections. Safe to call twice."""
        await self._server.close()

    async def __aenter__(self) -> KatapultSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- where and who -------------------------------------------------------------------------

    @property
    def config(self) -> SimulatorConfig:
        """The options this simulator runs with."""
        return self._config

    @property
    def port(self) -> int:
        """The port listened on (known once started)."""
        port = self._server.port
        if port is None:
            raise RuntimeError("the simulator has not been started")
        return port

    @property
    def root_url(self) -> str:
        """``http://host:port`` with no path."""
        host = self._config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API's base URL, e.g. ``http://127.0.0.1:41234/core/v1``."""
        return self.root_url + API_PREFIX

    @property
    def admin_url(self) -> str:
        """Base URL of the admin endpoints, e.g. ``http://127.0.0.1:41234/_sim``."""
        return self.root_url + ADMIN_PREFIX.rstrip("/")

    @property
    def token(self) -> str:
        """The default API token: every scope, the configured rate limit."""
        return self._core.default_token

    @property
    def auth_headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` for the default token."""
        return {"Authorization": f"Bearer {self.token}"}

    # -- requests, stats, faults ---------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The logged API requests, oldest first (empty if ``record_requests`` is off)."""
        log = self._core.recorder.log
        return [] if log is None else list(log)

    def clear_requests(self) -> None:
        """Empty the request log."""
        log = self._core.recorder.log
        if log is not None:
            log.clear()

    @property
    def stats(self) -> SimulatorStats:
        """A snapshot of the request counters."""
        return self._core.recorder.stats()

    def reset_stats(self) -> None:
        """Zero the request counters (the log and rate-limit counts are kept)."""
        self._core.recorder.reset()

    def inject(
        self,
        kind: FaultKind | str,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        probability: float = 1.0,
        delay: float = 0.0,
        retry_after: float | str | None = None,
        total_permitted: int | None = None,
    ) -> FaultRule:
        """Queue a fault for upcoming API requests.

        Rules are checked in the order they were queued; the first that matches the request
        (method, path substring, then a draw against ``probability``) hits it and uses up one of
        its ``times``. Faulted requests still count against the rate limit and are logged with
        ``fault`` set. See :class:`FaultKind` for what each kind does and which requests the
        task-specific kinds hit by default.

        Args:
            kind: The fault.
            times: Requests to hit; None or -1 for every matching request.
            method: Only requests with this method.
            path: Only requests whose path contains this text.
            probability: Chance a matching request is hit (seeded, so runs replay).
            delay: Seconds to wait before acting (required for ``SLOW_RESPONSE``).
            retry_after: ``Retry-After`` header value for ``RATE_LIMIT``.
            total_permitted: ``detail.total_permitted`` for ``RATE_LIMIT``.

        Returns:
            The queued rule.
        """
        rule = FaultRule(
            kind=FaultKind(kind),
            times=times,
            method=method,
            path=path,
            probability=probability,
            delay=delay,
            retry_after=retry_after,
            total_permitted=total_permitted,
        )
        self._core.faults.add(rule)
        return rule

    @property
    def faults(self) -> tuple[FaultRule, ...]:
        """The rules still queued."""
        return tuple(self._core.faults)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._core.faults.clear()
