"""The admin HTTP API under ``/_sim/``: a simulator's state and controls, for other processes.

Admin requests need no token, are not rate limited and are not logged. The routes (documented for
users in :mod:`katapult_async.testing`) call the simulator's public methods; their JSON is
rendered here, since it is no API object.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._faults import FaultRule
from ._model import RecordedRequest, SimulatedTask
from ._render import dumps, task_json
from ._types import SimulatorControls

if TYPE_CHECKING:
    from ._api import ApiCore

ADMIN_PREFIX = "/_sim/"

_Route = Callable[[web.BaseRequest], Awaitable[object]]
_OK = {"ok": True}


class AdminApi:
    """The admin routes of one simulator.

    Args:
        simulator: The simulator the routes read and control.
        core: Its request handling, for the world's state as of one clock reading.
    """

    def __init__(self, simulator: SimulatorControls, core: ApiCore) -> None:
        self._simulator = simulator
        self._core = core
        self._routes: dict[tuple[str, str], _Route] = {
            ("GET", "/_sim/state"): self._state,
            ("GET", "/_sim/requests"): self._requests,
            ("DELETE", "/_sim/requests"): self._clear_requests,
            ("GET", "/_sim/interfaces"): self._interfaces,
            ("POST", "/_sim/interfaces"): self._add_interfaces,
            ("POST", "/_sim/virtual_machines"): self._add_virtual_machine,
            ("GET", "/_sim/faults"): self._faults,
            ("POST", "/_sim/faults"): self._inject,
            ("DELETE", "/_sim/faults"): self._clear_faults,
            ("POST", "/_sim/reset_stats"): self._reset_stats,
        }

    async def handle(self, request: web.BaseRequest) -> web.Response:
        """Answer an admin request: 200 with JSON, 400 for bad input, 404 for unknown routes."""
        path = request.path
        route = self._routes.get((request.method, path.rstrip("/")))
        if route is None:
            description = f"No admin route matches '{path}' for {request.method}"
            return _error_response("route_not_found", description, 404)
        try:
            return _json_response(await route(request))
        except (KeyError, TypeError, ValueError) as exc:
            return _error_response("invalid_admin_request", str(exc), 400)

    async def _state(self, _request: web.BaseRequest) -> object:
        simulator = self._simulator
        world = self._core.world
        now = simulator.config.clock()
        world.settle(now)
        stats = simulator.stats
        return {
            "clock": {
                "now": now,
                "wall": simulator.to_wall(now),
                "clock_to_wall_offset": simulator.to_wall(0.0),  # exactly the offset
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
                interface.id: interface.speed_profile_id for interface in world.interfaces.values()
            },
            "tasks": {task.id: _task_state_json(task, now) for task in simulator.tasks.values()},
        }

    async def _requests(self, _request: web.BaseRequest) -> object:
        to_wall = self._simulator.to_wall
        return {"requests": [_request_json(r, to_wall) for r in self._simulator.requests]}

    async def _clear_requests(self, _request: web.BaseRequest) -> object:
        self._simulator.clear_requests()
        return _OK

    async def _interfaces(self, request: web.BaseRequest) -> object:
        return {"interfaces": self._interface_ids(request.query)}

    async def _add_interfaces(self, request: web.BaseRequest) -> object:
        body = await _json_object(request)
        ids = self._simulator.add_interfaces(
            int(body.get("count", 1)),
            speed_profile=str(body.get("speed_profile", "10gbps")),
            vm_id=body.get("virtual_machine_id"),
        )
        return {"interfaces": ids}

    async def _add_virtual_machine(self, request: web.BaseRequest) -> object:
        body = await _json_object(request)
        annotations = body.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise TypeError("annotations must be an object of strings")
        vm = self._simulator.add_virtual_machine(
            body.get("name"),
            fqdn=body.get("fqdn"),
            annotations={str(k): str(v) for k, v in annotations.items()},
            organization_id=body.get("organization_id"),
        )
        ids = self._simulator.add_interfaces(
            int(body.get("interfaces", 1)),
            speed_profile=str(body.get("speed_profile", "10gbps")),
            vm_id=vm.id,
        )
        return {"virtual_machine": {"id": vm.id, "fqdn": vm.fqdn}, "interfaces": ids}

    async def _faults(self, _request: web.BaseRequest) -> object:
        return {"faults": [_rule_json(rule) for rule in self._simulator.faults]}

    async def _inject(self, request: web.BaseRequest) -> object:
        body = await _json_object(request)
        return {"fault": _rule_json(self._simulator.inject(**body))}

    async def _clear_faults(self, _request: web.BaseRequest) -> object:
        self._simulator.clear_faults()
        return _OK

    async def _reset_stats(self, _request: web.BaseRequest) -> object:
        self._simulator.reset_stats()
        return _OK

    def _interface_ids(self, query: Mapping[str, str]) -> list[str]:
        world = self._core.world
        vm_id = query.get("virtual_machine_id", world.default_vm.id)
        if vm_id == "all":
            return list(world.interfaces)
        return list(world.vm_interfaces[vm_id])


def _task_state_json(task: SimulatedTask, now: float) -> dict[str, Any]:
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


def _request_json(recorded: RecordedRequest, to_wall: Callable[[float], float]) -> dict[str, Any]:
    return {
        "method": recorded.method,
        "path": recorded.path,
        "query": dict(recorded.query),
        "body": recorded.body,
        "headers": dict(recorded.headers),
        "token": recorded.token,
        "at": recorded.at,
        "at_wall": to_wall(recorded.at),
        "status": recorded.status,
        "fault": None if recorded.fault is None else recorded.fault.value,
        "request_id": recorded.request_id,
    }


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


def _json_response(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps(value), content_type="application/json")


def _error_response(code: str, description: str, status: int) -> web.Response:
    return _json_response({"error": {"code": code, "description": description}}, status)


async def _json_object(request: web.BaseRequest) -> dict[str, Any]:
    raw = await request.read()
    body = json.loads(raw) if raw else {}
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body
