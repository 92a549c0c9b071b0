"""The simulated Katapult Core API v1 as pure request handling, with no aiohttp.

The order of checks follows the live API, which runs on the Apia framework:

1. Routing: an unknown method and path get 404 ``route_not_found`` before any authentication,
   so such requests are not counted against a rate limit and carry no rate-limit headers.
2. The bearer token is resolved; a valid one from an allowed network is counted against its
   rate limit (every such request counts, refused ones included).
3. An injected fault, if one matches, acts here, ahead of every remaining check.
4. ``missing_api_token`` (400), ``invalid_api_token`` (403), ``unauthorized_network_for_api_token``
   (403), ``rate_limit_reached`` (429), ``scope_not_granted`` (403).
5. Arguments: query parameters (``task[id]=...``) and the JSON body are merged, the body winning,
   as Apia does. A lookup missing from both falls back to the path segment (``/tasks/<id>``,
   ``/_/`` or the literal segment name), which is how both URL styles of the live API work. Bad
   arguments get Apia's errors: 400 ``invalid_json_body``, ``missing_required_argument`` and
   ``invalid_argument`` (with ``detail.issue`` ``missing_lookup_value`` when a lookup names no
   key, ``ambiguous_lookup_values`` when it names more than one, e.g. both ``id`` and
   ``permalink``).
6. The endpoint's own work and errors (404 ``..._not_found``, 422
   ``speed_profile_already_assigned``).
"""

from __future__ import annotations

import collections
import enum
import ipaddress
import json
import math
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ._config import SimulatorConfig
from ._faults import FaultKind, FaultQueue, FaultRule
from ._model import (
    TASK_NAME,
    ApiToken,
    RecordedRequest,
    SimulatedInterface,
    SimulatedTask,
    SimulatorStats,
    SpeedProfile,
    TaskStatus,
)
from ._ratelimit import RateCounter
from ._world import World

API_PREFIX = "/core/v1"
OAUTH_SCOPE_PREFIX = "api.katapult.io/core/v1/"
JSON_TYPE = "application/json"
LIVE_DEFAULT_RATE_LIMIT = 1000

_DESCRIPTIONS = {
    "missing_api_token": (
        "No API token was provided in the Authorization header. "
        "Ensure a token is provided prefixed with Bearer"
    ),
    "invalid_api_token": "The API token provided was not valid (it may not exist or have expired)",
    "unauthorized_network_for_api_token": (
        "Network is not allowed to access the API with this API token"
    ),
    "scope_not_granted": (
        "The scope required for this endpoint has not been granted to the authenticating identity"
    ),
    "rate_limit_reached": "You have reached the rate limit for this type of request",
    "service_unavailable": "The service is currently unavailable, please try again later",
    "task_queueing_error": (
        "This error means that a background task that was needed to complete your request "
        "could not be queued"
    ),
    "speed_profile_already_assigned": (
        "This network speed profile is already assigned to this virtual machine network interface."
    ),
    "task_not_found": "No task was found matching any of the criteria provided in the arguments",
    "virtual_machine_network_interface_not_found": (
        "No network interface was found matching any of the criteria provided in the arguments"
    ),
    "network_speed_profile_not_found": (
        "No network speed profile was found matching any of the criteria provided in the arguments"
    ),
    "virtual_machine_not_found": (
        "No virtual machine was found matching any of the criteria provided in the arguments"
    ),
    "organization_not_found": (
        "No organization was found matching any of the criteria provided in the arguments"
    ),
    "invalid_json_body": "The JSON body provided with this request is invalid",
}

_ISSUE_DESCRIPTIONS = {
    "invalid_scalar": (
        "The value provided was not of an appropriate type for the scalar that was requested. "
        "For example, you may have passed a string where an integer was required etc..."
    ),
    "parse_error": (
        "The value provided could not be parsed into an appropriate value by the server. For "
        "example, if a date was expected and the value could not be interpretted as such."
    ),
    "missing_lookup_value": (
        "A value for a lookup argument set has not been provided but at least one value is "
        "required."
    ),
    "ambiguous_lookup_values": (
        "More than one value has been provided for a lookup argument set. Only one option may "
        "be provided."
    ),
}

_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

_INTEGER = re.compile(r"\s*-?\d+\s*")
_MAX_PER_PAGE = 200


class Endpoint(enum.Enum):
    """The API operations the simulator serves."""

    UPDATE_SPEED_PROFILE = "patch:virtual_machine_network_interface_update_speed_profile"
    GET_TASK = "get:task"
    GET_INTERFACE = "get:v_m_n_i__v_m_n_i"
    LIST_VM_INTERFACES = "get:virtual_machine_network_interfaces"
    LIST_SPEED_PROFILES = "get:organization_network_speed_profiles"


# (method, collection segment, action segment or None) -> endpoint; the middle segment is the
# lookup's route value.
_ROUTES = {
    ("PATCH", "virtual_machine_network_interfaces", "update_speed_profile"): (
        Endpoint.UPDATE_SPEED_PROFILE
    ),
    ("GET", "tasks", None): Endpoint.GET_TASK,
    ("GET", "virtual_machine_network_interfaces", None): Endpoint.GET_INTERFACE,
    ("GET", "virtual_machines", "network_interfaces"): Endpoint.LIST_VM_INTERFACES,
    ("GET", "organizations", "network_speed_profiles"): Endpoint.LIST_SPEED_PROFILES,
}

# Any one of these grants access; the speed-profile list needs only a valid token.
_SCOPES: dict[Endpoint, tuple[str, ...]] = {
    Endpoint.UPDATE_SPEED_PROFILE: ("virtual_machines",),
    Endpoint.GET_TASK: ("tasks", "tasks:read"),
    Endpoint.GET_INTERFACE: ("virtual_machines", "virtual_machines:read"),
    Endpoint.LIST_VM_INTERFACES: ("virtual_machines", "virtual_machines:read"),
    Endpoint.LIST_SPEED_PROFILES: (),
}


def route(method: str, path: str) -> tuple[Endpoint, str] | None:
    """Return the endpoint and route value (the lookup segment) for a request, or None."""
    if not path.startswith(API_PREFIX + "/"):
        return None
    parts = path[len(API_PREFIX) + 1 :].split("/")
    if len(parts) == 2:
        endpoint = _ROUTES.get((method, parts[0], None))
    elif len(parts) == 3:
        endpoint = _ROUTES.get((method, parts[0], parts[2]))
    else:
        return None
    if endpoint is None or not parts[1]:
        return None
    return endpoint, parts[1]


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def normalise_scope(scope: str) -> str:
    """Strip the OAuth2 prefix from a scope name."""
    return scope[len(OAUTH_SCOPE_PREFIX) :] if scope.startswith(OAUTH_SCOPE_PREFIX) else scope


def dumps(value: object) -> bytes:
    """Encode compact JSON, as the live API sends it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class ApiError(Exception):
    """An error response of the API, raised inside request handling."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: Mapping[str, Any] | None = None,
        *,
        description: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.description = _DESCRIPTIONS.get(code) if description is None else description
        self.detail = {} if detail is None else dict(detail)
        self.headers = headers


class Reply(NamedTuple):
    """A response to send: status, body, extra headers and content type."""

    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str


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
        self.error: ApiError | None = None
        self.fault: FaultRule | None = None
        self.reply_headers = {"X-Request-Id": str(uuid.uuid4())}


def _invalid_argument(
    endpoint: Endpoint, path: Sequence[str], issue: str, errors: Sequence[str] = ()
) -> ApiError:
    path_string = ".".join(path)
    return ApiError(
        400,
        "invalid_argument",
        {
            "path": list(path),
            "index": None,
            "issue": issue,
            "issue_description": _ISSUE_DESCRIPTIONS.get(issue),
            "errors": list(errors),
            "argument": {
                "id": f"{endpoint.value}/{path_string}",
                "name": path[-1],
                "description": None,
            },
        },
        description=f"The '{path_string}' argument is invalid",
    )


def _missing_argument(name: str) -> ApiError:
    return ApiError(
        400,
        "missing_required_argument",
        {"path": [name], "argument": {"name": name, "description": None}},
        description=f"The '{name}' argument is required but has not been provided",
    )


def _scalar(value: object) -> str:
    # Apia's string scalar turns numbers and booleans into their text.
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _merge_arguments(query: Mapping[str, str], body: Any) -> dict[str, Any]:
    """Merge bracketed query parameters and a JSON object body (which wins), as Rack and Apia do."""
    arguments: dict[str, Any] = {}
    for key, value in query.items():
        bracket = key.find("[")
        if bracket > 0 and key.endswith("]"):
            outer = arguments.get(key[:bracket])
            if not isinstance(outer, dict):
                outer = arguments[key[:bracket]] = {}
            outer[key[bracket + 1 : -1]] = value
        else:
            arguments[key] = value
    if isinstance(body, dict):
        for key, value in body.items():
            current = arguments.get(key)
            if isinstance(value, dict) and isinstance(current, dict):
                arguments[key] = {**current, **value}
            else:
                arguments[key] = value
    return arguments


def _lookup(
    endpoint: Endpoint,
    arguments: Mapping[str, Any],
    name: str,
    keys: tuple[str, ...],
    route_value: str | None,
) -> tuple[str, str | None]:
    """Resolve a lookup argument set to its one ``(key, value)``; value None finds nothing."""
    if name not in arguments:
        if route_value is None:
            raise _missing_argument(name)
        return keys[0], route_value
    raw = arguments[name]
    if raw is None:
        raise _missing_argument(name)
    if not isinstance(raw, dict):
        raise _invalid_argument(endpoint, [name], "object_expected")
    given: list[tuple[str, str | None]] = []
    for key in keys:
        if key in raw:
            value = raw[key]
            if isinstance(value, (dict, list)):
                raise _invalid_argument(endpoint, [name, key], "invalid_scalar")
            given.append((key, None if value is None else _scalar(value)))
    if not given:
        raise _invalid_argument(endpoint, [name], "missing_lookup_value")
    present = [item for item in given if item[1] is not None]
    if len(present) > 1:
        raise _invalid_argument(endpoint, [name], "ambiguous_lookup_values")
    return present[0] if present else given[0]


def _positive_integer(
    endpoint: Endpoint,
    arguments: Mapping[str, Any],
    name: str,
    default: int,
    maximum: int | None = None,
) -> int:
    raw = arguments.get(name)
    if raw is None:
        return default
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and _INTEGER.fullmatch(raw):
        value = int(raw)
    else:
        raise _invalid_argument(
            endpoint, [name], "parse_error", ["Integer must only contain numeric values"]
        )
    errors = []
    if value <= 0:
        errors.append("greater_than_zero")
    if maximum is not None and value > maximum:
        errors.append("less_than_or_equal_to_one_hundred")
    if errors:
        raise _invalid_argument(endpoint, [name], "validation_errors", errors)
    return value


def _paginate(
    endpoint: Endpoint, arguments: Mapping[str, Any], items: Sequence[Any]
) -> tuple[Sequence[Any], dict[str, Any]]:
    page = _positive_integer(endpoint, arguments, "page", 1)
    per_page = _positive_integer(endpoint, arguments, "per_page", 30, _MAX_PER_PAGE)
    total = len(items)
    start = (page - 1) * per_page
    pagination = {
        "current_page": page,
        "total_pages": max(1, math.ceil(total / per_page)),
        "total": total,
        "per_page": per_page,
        "large_set": False,
    }
    return items[start : start + per_page], pagination


def task_json(task: SimulatedTask, now: float) -> dict[str, Any]:
    """The API's ``Task`` object for ``task`` at clock time ``now``."""
    status = task.status_at(now)
    finished = status is TaskStatus.COMPLETED or status is TaskStatus.FAILED
    finishes_at_wall = task.finishes_at_wall
    return {
        "id": task.id,
        "name": TASK_NAME,
        "status": status.value,
        "created_at": int(task.created_wall),
        "started_at": None if status is TaskStatus.PENDING else int(task.starts_at_wall),
        "finished_at": (
            int(finishes_at_wall) if finished and finishes_at_wall is not None else None
        ),
        "progress": task.progress_at(now),
    }


def _new_task_json(task: SimulatedTask) -> dict[str, Any]:
    # The update's own response shows the task as just queued, as the live API does.
    return {
        "id": task.id,
        "name": TASK_NAME,
        "status": TaskStatus.PENDING.value,
        "created_at": int(task.created_wall),
        "started_at": None,
        "finished_at": None,
        "progress": 0,
    }


def _profile_json(profile: SpeedProfile) -> dict[str, Any]:
    return {
        "id": profile.id,
        "name": profile.name,
        "upload_speed_in_mbit": profile.upload_speed_in_mbit,
        "download_speed_in_mbit": profile.download_speed_in_mbit,
        "permalink": profile.permalink,
    }


class ApiCore:
    """State plus request handling for one simulator; the HTTP layer only moves bytes."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.world = World(config, self.rng)
        self.tokens: dict[str, ApiToken] = {}
        self.default_token = config.token or "ksim_" + "".join(
            self.rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=32)
        )
        self.add_token(self.default_token, None, None, config.rate_limit)
        self.faults = FaultQueue(self.rng)
        self.rate_counter = RateCounter(config.rate_limit_window, config.rate_limit_mode)
        self.log: collections.deque[RecordedRequest] | None = (
            collections.deque(maxlen=config.max_recorded_requests)
            if config.record_requests
            else None
        )
        self._clock = config.clock
        self._wall_clock = config.wall_clock
        self._wrapped = config.error_envelope == "wrapped"
        self._rate_headers = config.rate_limit_headers
        self.reset_stats()

    # -- tokens, stats -------------------------------------------------------------------------

    def add_token(
        self,
        token: str,
        scopes: frozenset[str] | None,
        allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None,
        rate_limit: int | None,
    ) -> ApiToken:
        """Register (or replace) an API token."""
        if not token or token != token.strip() or " " in token:
            raise ValueError("a token must be non-empty and contain no spaces")
        if scopes is not None:
            scopes = frozenset(normalise_scope(scope) for scope in scopes)
        record = ApiToken(token, scopes, allowed_networks, rate_limit)
        self.tokens[token] = record
        return record

    def reset_stats(self) -> None:
        """Zero every counter."""
        self.total = 0
        self.by_status: collections.Counter[int] = collections.Counter()
        self.patches = 0
        self.task_polls = 0
        self.tasks_created = 0
        self.dropped = 0
        self.fault_counts: collections.Counter[FaultKind] = collections.Counter()

    def stats(self) -> SimulatorStats:
        """A snapshot of the counters."""
        return SimulatorStats(
            total=self.total,
            by_status=dict(self.by_status),
            rate_limited=self.by_status.get(429, 0),
            patches=self.patches,
            task_polls=self.task_polls,
            tasks_created=self.tasks_created,
            dropped=self.dropped,
            faults=dict(self.fault_counts),
        )

    # -- request handling ----------------------------------------------------------------------

    def begin(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        remote: str | None,
    ) -> Call:
        """Route, authenticate and count a request, and pick the fault that hits it, if any."""
        call = Call(method, path, query, headers, self._clock())
        routed = route(method, path)
        if routed is None:
            api_path = path.removeprefix(API_PREFIX).lstrip("/")
            description = f"No route matches '{api_path}' for {method}"
            call.error = ApiError(404, "route_not_found", description=description)
            return call
        call.endpoint, call.route_value = routed
        token = call.token = bearer_token(headers.get("Authorization"))
        identity = None if token is None else self.tokens.get(token)
        if token is None:
            call.error = ApiError(400, "missing_api_token")
        elif identity is None:
            call.error = ApiError(403, "invalid_api_token")
        elif identity.allowed_networks is not None and not _allowed(
            remote, identity.allowed_networks
        ):
            call.error = ApiError(403, "unauthorized_network_for_api_token", {"ip_address": remote})
        else:
            call.identity = identity
            limit = identity.rate_limit
            if limit is not None:
                count = self.rate_counter.hit(identity.token, call.at)
                if self._rate_headers:
                    call.reply_headers["X-Ratelimit-Permitted"] = str(limit)
                    call.reply_headers["X-Ratelimit-Remaining"] = str(max(0, limit - count))
                if count > limit:
                    call.error = ApiError(429, "rate_limit_reached", {"total_permitted": limit})
        if self.faults:
            call.fault = self.faults.pick(
                method,
                path,
                is_update=call.endpoint is Endpoint.UPDATE_SPEED_PROFILE,
                is_task_read=call.endpoint is Endpoint.GET_TASK,
            )
        return call

    def respond(self, call: Call, raw_body: bytes, content_type: str) -> Reply:
        """Check, validate and carry out a request that no fault answers; return its response."""
        try:
            if call.error is not None:
                raise call.error
            endpoint = call.endpoint
            assert endpoint is not None
            identity = call.identity
            assert identity is not None
            scopes = _SCOPES[endpoint]
            if scopes and identity.scopes is not None and identity.scopes.isdisjoint(scopes):
                raise ApiError(403, "scope_not_granted", {"scopes": list(scopes)})
            body: Any = None
            if raw_body and content_type.startswith(JSON_TYPE):
                try:
                    body = json.loads(raw_body)
                except ValueError as exc:  # UnicodeDecodeError is a ValueError too
                    raise ApiError(400, "invalid_json_body", {"details": str(exc)}) from None
            arguments = _merge_arguments(call.query, body)
            now = self._clock()
            self.world.settle(now)
            if endpoint is Endpoint.UPDATE_SPEED_PROFILE:
                result = self._update_speed_profile(call, arguments, now)
            elif endpoint is Endpoint.GET_TASK:
                result = self._get_task(call, arguments, now)
            elif endpoint is Endpoint.GET_INTERFACE:
                result = self._get_interface(call, arguments)
            elif endpoint is Endpoint.LIST_VM_INTERFACES:
                result = self._list_vm_interfaces(call, arguments)
            else:
                result = self._list_speed_profiles(call, arguments)
        except ApiError as error:
            return self.error_reply(call, error)
        return Reply(200, dumps(result), call.reply_headers, JSON_TYPE)

    def error_reply(self, call: Call, error: ApiError) -> Reply:
        """The response for an API error, in the configured envelope."""
        payload = {"code": error.code, "description": error.description, "detail": error.detail}
        headers = call.reply_headers
        headers["X-Api-Schema"] = "json-error"
        if error.headers:
            headers.update(error.headers)
        return Reply(
            error.status,
            dumps({"error": payload} if self._wrapped else payload),
            headers,
            JSON_TYPE,
        )

    def fault_reply(self, call: Call, rule: FaultRule) -> Reply:
        """The response for a fault that answers in place of the API."""
        kind = rule.kind
        if kind is FaultKind.HTML_502:
            return Reply(502, _HTML_502, {}, "text/html")
        if kind is FaultKind.SERVICE_UNAVAILABLE:
            error = ApiError(503, "service_unavailable")
        elif kind is FaultKind.TASK_QUEUEING_ERROR:
            error = ApiError(
                406, "task_queueing_error", {"details": "The task queue is unavailable (simulated)"}
            )
        elif kind is FaultKind.TASK_NOT_FOUND:
            error = ApiError(404, "task_not_found")
        elif kind is FaultKind.RATE_LIMIT:
            permitted = rule.total_permitted
            if permitted is None:
                identity_limit = call.identity.rate_limit if call.identity else None
                permitted = identity_limit or self.config.rate_limit or LIVE_DEFAULT_RATE_LIMIT
            retry_after = rule.retry_after
            error = ApiError(
                429,
                "rate_limit_reached",
                {"total_permitted": permitted},
                headers=None if retry_after is None else {"Retry-After": _header(retry_after)},
            )
        else:
            raise ValueError(f"{kind} does not answer in place of the API")
        return self.error_reply(call, error)

    def record(self, call: Call, status: int | None, raw_body: bytes) -> None:
        """Count a finished request and add it to the log; status None means no response."""
        self.total += 1
        if status is None:
            self.dropped += 1
        else:
            self.by_status[status] += 1
        endpoint = call.endpoint
        if endpoint is Endpoint.UPDATE_SPEED_PROFILE:
            self.patches += 1
        elif endpoint is Endpoint.GET_TASK:
            self.task_polls += 1
        fault = call.fault.kind if call.fault is not None else None
        if fault is not None:
            self.fault_counts[fault] += 1
        if self.log is not None:
            self.log.append(
                RecordedRequest(
                    method=call.method,
                    path=call.path,
                    query=dict(call.query),
                    body=_log_body(raw_body),
                    headers=dict(call.headers),
                    token=call.token,
                    at=call.at,
                    status=status,
                    fault=fault,
                    request_id=call.reply_headers["X-Request-Id"],
                )
            )

    # -- endpoints -----------------------------------------------------------------------------

    def _interface(
        self, endpoint: Endpoint, arguments: Mapping[str, Any], route_value: str
    ) -> SimulatedInterface:
        _, interface_id = _lookup(
            endpoint, arguments, "virtual_machine_network_interface", ("id",), route_value
        )
        interface = None if interface_id is None else self.world.interfaces.get(interface_id)
        if interface is None:
            raise ApiError(404, "virtual_machine_network_interface_not_found")
        return interface

    def _update_speed_profile(
        self, call: Call, arguments: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        endpoint = Endpoint.UPDATE_SPEED_PROFILE
        world = self.world
        interface_lookup = _lookup(
            endpoint, arguments, "virtual_machine_network_interface", ("id",), call.route_value
        )
        key, value = _lookup(endpoint, arguments, "speed_profile", ("id", "permalink"), None)
        interface_id = interface_lookup[1]
        interface = None if interface_id is None else world.interfaces.get(interface_id)
        if interface is None:
            raise ApiError(404, "virtual_machine_network_interface_not_found")
        if value is None:
            profile = None
        elif key == "id":
            profile = world.speed_profiles.get(value)
        else:
            profile = world.profiles_by_permalink.get(value)
        if profile is None:
            raise ApiError(404, "network_speed_profile_not_found")
        if interface.speed_profile_id == profile.id:
            raise ApiError(422, "speed_profile_already_assigned")
        task = world.create_task(interface, profile, now, self._wall_clock())
        self.tasks_created += 1
        return {"task": _new_task_json(task)}

    def _get_task(self, call: Call, arguments: Mapping[str, Any], now: float) -> dict[str, Any]:
        _, task_id = _lookup(Endpoint.GET_TASK, arguments, "task", ("id",), call.route_value)
        task = None if task_id is None else self.world.tasks.get(task_id)
        if task is None:
            raise ApiError(404, "task_not_found")
        return {"task": task_json(task, now)}

    def _get_interface(self, call: Call, arguments: Mapping[str, Any]) -> dict[str, Any]:
        interface = self._interface(Endpoint.GET_INTERFACE, arguments, call.route_value)
        return {"virtual_machine_network_interface": self.interface_json(interface)}

    def _list_vm_interfaces(self, call: Call, arguments: Mapping[str, Any]) -> dict[str, Any]:
        endpoint = Endpoint.LIST_VM_INTERFACES
        world = self.world
        key, value = _lookup(
            endpoint, arguments, "virtual_machine", ("id", "fqdn"), call.route_value
        )
        if value is None:
            vm = None
        elif key == "id":
            vm = world.virtual_machines.get(value)
        else:
            vm = world.vms_by_fqdn.get(value)
        if vm is None:
            raise ApiError(404, "virtual_machine_not_found")
        page, pagination = _paginate(endpoint, arguments, world.vm_interfaces[vm.id])
        interfaces = world.interfaces
        return {
            "pagination": pagination,
            "virtual_machine_network_interfaces": [
                self._interface_summary_json(interfaces[interface_id]) for interface_id in page
            ],
        }

    def _list_speed_profiles(self, call: Call, arguments: Mapping[str, Any]) -> dict[str, Any]:
        endpoint = Endpoint.LIST_SPEED_PROFILES
        organization = self.world.organization
        key, value = _lookup(
            endpoint, arguments, "organization", ("id", "sub_domain"), call.route_value
        )
        if value != (organization.id if key == "id" else organization.sub_domain):
            raise ApiError(404, "organization_not_found")
        profiles = list(self.world.speed_profiles.values())
        page, pagination = _paginate(endpoint, arguments, profiles)
        return {
            "pagination": pagination,
            "network_speed_profiles": [_profile_json(profile) for profile in page],
        }

    # -- rendering -----------------------------------------------------------------------------

    def interface_json(self, interface: SimulatedInterface) -> dict[str, Any]:
        """The API's full interface object, as ``GET .../virtual_machine_network_interface``."""
        world = self.world
        vm = world.virtual_machines[interface.virtual_machine_id]
        network = world.networks[interface.network_id]
        profile = world.speed_profiles[interface.speed_profile_id]
        return {
            "id": interface.id,
            "virtual_machine": {"id": vm.id, "name": vm.name},
            "name": interface.name,
            "network": {"id": network.id, "name": network.name},
            "virtual_network": None,
            "mac_address": interface.mac_address,
            "state": "attached",
            "ip_addresses": [{"id": interface.ip_address_id, "address": interface.ip_address}],
            "speed_profile": {
                "id": profile.id,
                "name": profile.name,
                "permalink": profile.permalink,
            },
        }

    def _interface_summary_json(self, interface: SimulatedInterface) -> dict[str, Any]:
        # The list endpoint's shape per the spec: no VM, MAC, state or speed profile.
        network = self.world.networks[interface.network_id]
        return {
            "id": interface.id,
            "name": interface.name,
            "network": {"id": network.id, "name": network.name},
            "virtual_network": None,
            "ip_addresses": [{"id": interface.ip_address_id, "address": interface.ip_address}],
        }


def _allowed(
    remote: str | None,
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
) -> bool:
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _header(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def _log_body(raw_body: bytes) -> Any:
    if not raw_body:
        return None
    try:
        return json.loads(raw_body)
    except ValueError:
        return raw_body.decode(errors="replace")
