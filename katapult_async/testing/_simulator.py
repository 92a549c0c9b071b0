"""`KatapultSimulator`: the simulated API served by aiohttp on a loopback port."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from aiohttp import web

from ._api import API_PREFIX, ApiCore, Reply, dumps, task_json
from ._config import ErrorEnvelope, RateLimitMode, SimulatorConfig
from ._faults import FaultKind, FaultRule
from ._model import (
    ApiToken,
    Organization,
    RecordedRequest,
    SimulatedInterface,
    SimulatedTask,
    SimulatorStats,
    SpeedProfile,
    VirtualMachine,
)

_ADMIN_PREFIX = "/_sim/"


class KatapultSimulator:
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

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_non_loopback: bool = False,
        token: str | None = None,
        organization_sub_domain: str = "acme",
        rate_limit: int | None = None,
        rate_limit_window: float = 60.0,
        rate_limit_mode: RateLimitMode = "fixed",
        rate_limit_headers: bool = True,
        error_envelope: ErrorEnvelope = "wrapped",
        task_duration: float = 2.0,
        task_duration_jitter: float = 0.0,
        task_start_delay: float | None = None,
        task_failure_rate: float = 0.0,
        task_never_finish_rate: float = 0.0,
        seed: int | None = None,
        latency: float = 0.0,
        record_requests: bool = True,
        max_recorded_requests: int | None = 50_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        config = SimulatorConfig(
            host=host,
            port=port,
            allow_non_loopback=allow_non_loopback,
            token=token,
            organization_sub_domain=organization_sub_domain,
            rate_limit=rate_limit,
            rate_limit_window=rate_limit_window,
            rate_limit_mode=rate_limit_mode,
            rate_limit_headers=rate_limit_headers,
            error_envelope=error_envelope,
            task_duration=task_duration,
            task_duration_jitter=task_duration_jitter,
            task_start_delay=task_start_delay,
            task_failure_rate=task_failure_rate,
            task_never_finish_rate=task_never_finish_rate,
            seed=seed,
            latency=latency,
            record_requests=record_requests,
            max_recorded_requests=max_recorded_requests,
            clock=clock,
            wall_clock=wall_clock,
        )
        self._setup(config)

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
        self._runner: web.ServerRunner | None = None
        self._port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening. Does nothing if already started."""
        if self._runner is not None:
            return
        server = web.Server(self._handle, access_log=None)
        # A short shutdown grace: a SLOW_RESPONSE in flight must not hold up close().
        runner = web.ServerRunner(server, shutdown_timeout=0.2)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._config.host, self._config.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening and close open connections. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

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
        if self._port is None:
            raise RuntimeError("the simulator has not been started")
        return self._port

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
        return self.root_url + _ADMIN_PREFIX.rstrip("/")

    @property
    def token(self) -> str:
        """The default API token: every scope, the configured rate limit."""
        return self._core.default_token

    @property
    def auth_headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` for the default token."""
        return {"Authorization": f"Bearer {self.token}"}

    def add_token(
        self,
        token: str,
        scopes: Iterable[str] | None = None,
        *,
        allowed_networks: Iterable[str] | None = None,
        rate_limit: int | Literal["default"] | None = "default",
    ) -> ApiToken:
        """Register another API token (or replace one).

        Args:
            token: The secret clients send as ``Authorization: Bearer <token>``.
            scopes: Granted scopes such as ``"virtual_machines"`` or ``"tasks:read"`` (the
                OAuth2 ``api.katapult.io/core/v1/`` prefix is accepted); None grants every scope.
            allowed_networks: Networks (``"10.0.0.0/8"``, ``"127.0.0.1"``) requests may come
                from; None allows any. Others get 403 ``unauthorized_network_for_api_token``.
            rate_limit: Requests per window for this token; ``"default"`` uses the configured
                ``rate_limit``, None means unlimited. Each token has its own count.

        Returns:
            The token's record.
        """
        networks = (
            None
            if allowed_networks is None
            else tuple(ipaddress.ip_network(network, strict=False) for network in allowed_networks)
        )
        return self._core.add_token(
            token,
            None if scopes is None else frozenset(scopes),
            networks,
            self._config.rate_limit if rate_limit == "default" else rate_limit,
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def organization(self) -> Organization:
        """The organisation that owns everything."""
        return self._core.world.organization

    @property
    def speed_profiles(self) -> Mapping[str, SpeedProfile]:
        """Speed profiles by id: 10mbps, 100mbps, 500mbps, 1gbps, 10gbps and unrestricted."""
        return types.MappingProxyType(self._core.world.speed_profiles)

    def profile_by_permalink(self, permalink: str) -> SpeedProfile:
        """Return the speed profile with this permalink, e.g. ``"1gbps"``; KeyError if none."""
        return self._core.world.profiles_by_permalink[permalink]

    @property
    def virtual_machines(self) -> Mapping[str, VirtualMachine]:
        """VMs by id. The default VM (``default_virtual_machine``) starts with no interfaces;
        two more (``sim-web-1``, ``sim-db-1``) have a public and a private interface each."""
        return types.MappingProxyType(self._core.world.virtual_machines)

    @property
    def default_virtual_machine(self) -> VirtualMachine:
        """The VM ``add_interfaces`` attaches to unless told otherwise."""
        return self._core.world.default_vm

    def add_virtual_machine(
        self, name: str | None = None, *, fqdn: str | None = None
    ) -> VirtualMachine:
        """Create a VM with no interfaces and return it.

        Args:
            name: Its name and hostname; ``sim-vm-<n>`` if None.
            fqdn: Its FQDN; ``<name>.<sub_domain>.kpult.com`` if None.

        Raises:
            ValueError: Another VM has that FQDN.
        """
        return self._core.world.add_virtual_machine(name, fqdn=fqdn)

    def add_interfaces(
        self, count: int, *, speed_profile: str = "10gbps", vm_id: str | None = None
    ) -> list[str]:
        """Create interfaces on a VM and return their ids in order.

        Fast enough for benchmarks (100,000 interfaces in well under a second). Ids are
        deterministic, unique, valid-looking ``vmnet_`` + 16 alphanumerics.

        Args:
            count: How many interfaces to create.
            speed_profile: Permalink or id of their initial profile.
            vm_id: The VM to attach them to; the default VM if None.

        Raises:
            KeyError: The profile or VM does not exist.
        """
        return self._core.world.add_interfaces(count, speed_profile=speed_profile, vm_id=vm_id)

    @property
    def interfaces(self) -> Mapping[str, SimulatedInterface]:
        """Every interface by id, after applying the reverts of tasks that have failed by now.

        A read-only live view: hold on to it across time and call ``settle()`` before reading
        it again to see later reverts.
        """
        self.settle()
        return types.MappingProxyType(self._core.world.interfaces)

    @property
    def tasks(self) -> Mapping[str, SimulatedTask]:
        """Every task by id (a read-only live view); ``task.status_at(clock())`` gives status."""
        return types.MappingProxyType(self._core.world.tasks)

    def settle(self) -> None:
        """Apply the reverts of every task that has failed by now."""
        self._core.world.settle(self._config.clock())

    async def wait_for_tasks(self, timeout: float | None = None) -> None:
        """Wait until every task that will finish has finished, then ``settle()``.

        Sleeps in real time, so with an injected clock it returns only once that clock has
        reached the last finish time.

        Raises:
            asyncio.TimeoutError: ``timeout`` seconds passed first.
        """

        async def wait() -> None:
            clock = self._config.clock
            while True:
                latest = self._core.world.latest_finish
                remaining = 0.0 if latest is None else latest - clock()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(remaining, 0.5))
            self.settle()

        await asyncio.wait_for(wait(), timeout)

    def to_wall(self, clock_time: float) -> float:
        """Convert a time on the simulator's ``clock`` to unix time."""
        return clock_time + self._wall_offset

    # -- requests, stats, faults ---------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The logged API requests, oldest first (empty if ``record_requests`` is off)."""
        log = self._core.log
        return [] if log is None else list(log)

    def clear_requests(self) -> None:
        """Empty the request log."""
        if self._core.log is not None:
            self._core.log.clear()

    @property
    def stats(self) -> SimulatorStats:
        """A snapshot of the request counters."""
        return self._core.stats()

    def reset_stats(self) -> None:
        """Zero the request counters (the log and rate-limit counts are kept)."""
        self._core.reset_stats()

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

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith(_ADMIN_PREFIX):
            return await self._admin(request, path)
        raw_body = await request.read() if request.body_exists else b""
        core = self._core
        call = core.begin(request.method, path, request.query, request.headers, request.remote)
        rule = call.fault
        reply: Reply
        if rule is None:
            reply = core.respond(call, raw_body, request.content_type)
        else:
            if rule.delay > 0:
                await asyncio.sleep(rule.delay)
            kind = rule.kind
            if kind is FaultKind.DROP_CONNECTION or (
                kind is FaultKind.SLOW_RESPONSE and _client_gone(request)
            ):
                core.record(call, None, raw_body)
                return _drop(request)
            if kind is FaultKind.LOST_RESPONSE or kind is FaultKind.SLOW_RESPONSE:
                reply = core.respond(call, raw_body, request.content_type)
                if kind is FaultKind.LOST_RESPONSE:
                    core.record(call, None, raw_body)
                    return _drop(request)
            else:
                reply = core.fault_reply(call, rule)
        core.record(call, reply.status, raw_body)
        if self._config.latency:
            await asyncio.sleep(self._config.latency)
        return web.Response(
            status=reply.status,
            body=reply.body,
            headers=reply.headers,
            content_type=reply.content_type,
        )

    async def _admin(self, request: web.BaseRequest, path: str) -> web.Response:
        action = (request.method, path.rstrip("/"))
        try:
            if action == ("GET", "/_sim/state"):
                return _json_response(self._admin_state())
            if action == ("GET", "/_sim/requests"):
                return _json_response({"requests": [self._request_json(r) for r in self.requests]})
            if action == ("DELETE", "/_sim/requests"):
                self.clear_requests()
                return _json_response({"ok": True})
            if action == ("GET", "/_sim/interfaces"):
                return _json_response({"interfaces": self._admin_interfaces(request.query)})
            if action == ("POST", "/_sim/interfaces"):
                body = await _json_object(request)
                ids = self.add_interfaces(
                    int(body.get("count", 1)),
                    speed_profile=str(body.get("speed_profile", "10gbps")),
                    vm_id=body.get("virtual_machine_id"),
                )
                return _json_response({"interfaces": ids})
            if action == ("GET", "/_sim/faults"):
                return _json_response({"faults": [_rule_json(rule) for rule in self.faults]})
            if action == ("POST", "/_sim/faults"):
                body = await _json_object(request)
                rule = self.inject(**body)
                return _json_response({"fault": _rule_json(rule)})
            if action == ("DELETE", "/_sim/faults"):
                self.clear_faults()
                return _json_response({"ok": True})
            if action == ("POST", "/_sim/reset_stats"):
                self.reset_stats()
                return _json_response({"ok": True})
        except (KeyError, TypeError, ValueError) as exc:
            return _json_response(
                {"error": {"code": "invalid_admin_request", "description": str(exc)}}, 400
            )
        return _json_response(
            {
                "error": {
                    "code": "route_not_found",
                    "description": f"No admin route matches '{path}' for {request.method}",
                }
            },
            404,
        )

    def _admin_state(self) -> dict[str, Any]:
        clock = self._config.clock
        now = clock()
        self._core.world.settle(now)
        stats = self.stats
        return {
            "clock": {
                "now": now,
                "wall": self.to_wall(now),
                "clock_to_wall_offset": self._wall_offset,
            },
            "stats": {
                "total": stats.total,
                "by_status": {str(status): n for status, n in stats.by_status.items()},
                "rate_limited": stats.rate_limited,
                "patches": stats.patches,
                "task_polls": stats.task_polls,
                "tasks_created": stats.tasks_created,
                "dropped": stats.dropped,
                "faults": {kind.value: n for kind, n in stats.faults.items()},
            },
            "interfaces": {
                interface.id: interface.speed_profile_id
                for interface in self._core.world.interfaces.values()
            },
            "tasks": {task.id: self._task_state_json(task, now) for task in self.tasks.values()},
        }

    def _task_state_json(self, task: SimulatedTask, now: float) -> dict[str, Any]:
        body = task_json(task, now)
        return {
            "status": body["status"],
            "progress": body["progress"],
            "interface_id": task.interface_id,
            "speed_profile_id": task.speed_profile_id,
            "previous_speed_profile_id": task.previous_speed_profile_id,
            "outcome": task.outcome.value,
            "created": task.created,
            "starts_at": task.starts_at,
            "finishes_at": task.finishes_at,
            "created_wall": task.created_wall,
            "starts_at_wall": task.starts_at_wall,
            "finishes_at_wall": task.finishes_at_wall,
        }

    def _admin_interfaces(self, query: Mapping[str, str]) -> list[str]:
        world = self._core.world
        vm_id = query.get("virtual_machine_id", world.default_vm.id)
        if vm_id == "all":
            return list(world.interfaces)
        return list(world.vm_interfaces[vm_id])

    def _request_json(self, recorded: RecordedRequest) -> dict[str, Any]:
        return {
            "method": recorded.method,
            "path": recorded.path,
            "query": dict(recorded.query),
            "body": recorded.body,
            "headers": dict(recorded.headers),
            "token": recorded.token,
            "at": recorded.at,
            "at_wall": self.to_wall(recorded.at),
            "status": recorded.status,
            "fault": None if recorded.fault is None else recorded.fault.value,
            "request_id": recorded.request_id,
        }


def _client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    # Closing the transport makes aiohttp's attempt to write the returned response fail with a
    # ConnectionError, which it treats as a client that went away: no response, no log noise.
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response()


def _json_response(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps(value), content_type="application/json")


async def _json_object(request: web.BaseRequest) -> dict[str, Any]:
    raw = await request.read()
    body = json.loads(raw) if raw else {}
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _rule_json(rule: FaultRule) -> dict[str, Any]:
    return {
        "kind": rule.kind.value,
        "times": rule.times,
        "method": rule.method,
        "path": rule.path,
        "probability": rule.probability,
        "delay": rule.delay,
        "retry_after": rule.retry_after,
        "total_permitted": rule.total_permitted,
    }
