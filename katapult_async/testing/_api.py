"""The simulated API's request pipeline, as pure request handling with no aiohttp.

:class:`ApiCore` owns one simulator's state and takes each API request through the checks of the
live API (which runs on the Apia framework), in its order:

1. Routing: an unknown method and path get 404 ``route_not_found`` before any authentication,
   so such requests are not counted against a rate limit and carry no rate-limit headers.
2. The bearer token is resolved; a valid one from an allowed network is counted against its
   rate limit (every such request counts, refused ones included).
3. An injected fault, if one matches, acts here, ahead of every remaining check.
4. ``missing_api_token`` (400), ``invalid_api_token`` (403), ``unauthorized_network_for_api_token``
   (403), ``rate_limit_reached`` (429), ``scope_not_granted`` (403).
5. Arguments, by the grammar of :mod:`._args`.
6. The endpoint's own work and errors, in :mod:`._endpoints`.

The HTTP layer (:mod:`._simulator`) calls :meth:`ApiCore.begin`, then :meth:`ApiCore.respond` or
:meth:`ApiCore.fault_reply`, and records the outcome; it only moves bytes.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._args import Arguments, SimulatedAPIError
from ._config import SimulatorConfig
from ._endpoints import API_PREFIX, SCOPES, Endpoint, Endpoints, route
from ._faults import FaultKind, FaultQueue, FaultRule
from ._model import ApiToken
from ._ratelimit import RateCounter
from ._recorder import RequestRecorder
from ._render import dumps
from ._types import Call
from ._world import World

OAUTH_SCOPE_PREFIX = "api.katapult.io/core/v1/"
JSON_TYPE = "application/json"
LIVE_DEFAULT_RATE_LIMIT = 1000

_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


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


class Reply(NamedTuple):
    """A response to send: status, body, extra headers and content type."""

    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str


class ApiCore:
    """State plus request handling for one simulator; the HTTP layer only moves bytes."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        # One seeded generator behind every random choice, drawn from in this order, so runs replay.
        self.rng = random.Random(config.seed)
        self.world = World(config, self.rng)
        self.tokens: dict[str, ApiToken] = {}
        self.default_token = config.token or "ksim_" + "".join(
            self.rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=32)
        )
        self.add_token(self.default_token, None, None, config.rate_limit)
        self.faults = FaultQueue(self.rng)
        self.rate_counter = RateCounter(config.rate_limit_window, config.rate_limit_mode)
        self.recorder = RequestRecorder(config.record_requests, config.max_recorded_requests)
        self.endpoints = Endpoints(self.world, config.wall_clock)
        self._clock = config.clock
        self._wrapped = config.error_envelope == "wrapped"
        self._rate_headers = config.rate_limit_headers

    def add_token(
        self,
        token: str,
        scopes: frozenset[str] | None,
        allowed_networks: Networks | None,
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
            call.error = SimulatedAPIError("route_not_found", description=description)
            return call
        call.endpoint, call.route_value = routed
        token = call.token = bearer_token(headers.get("Authorization"))
        identity = None if token is None else self.tokens.get(token)
        if token is None:
            call.error = SimulatedAPIError("missing_api_token")
        elif identity is None:
            call.error = SimulatedAPIError("invalid_api_token")
        elif identity.allowed_networks is not None and not _allowed(
            remote, identity.allowed_networks
        ):
            call.error = SimulatedAPIError(
                "unauthorized_network_for_api_token", {"ip_address": remote}
            )
        else:
            call.identity = identity
            limit = identity.rate_limit
            if limit is not None:
                count = self.rate_counter.hit(identity.token, call.at)
                if self._rate_headers:
                    call.reply_headers["X-Ratelimit-Permitted"] = str(limit)
                    call.reply_headers["X-Ratelimit-Remaining"] = str(max(0, limit - count))
                if count > limit:
                    call.error = SimulatedAPIError("rate_limit_reached", {"total_permitted": limit})
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
            scopes = SCOPES[endpoint]
            if scopes and identity.scopes is not None and identity.scopes.isdisjoint(scopes):
                raise SimulatedAPIError("scope_not_granted", {"scopes": list(scopes)})
            body: Any = None
            if raw_body and content_type.startswith(JSON_TYPE):
                try:
                    body = json.loads(raw_body)
                except ValueError as exc:  # UnicodeDecodeError is a ValueError too
                    raise SimulatedAPIError("invalid_json_body", {"details": str(exc)}) from None
            arguments = Arguments(endpoint.value, call.query, body)
            now = self._clock()
            self.world.settle(now)
            result = self.endpoints.handle(endpoint, arguments, call.route_value, now)
            if endpoint is Endpoint.UPDATE_SPEED_PROFILE:
                self.recorder.tasks_created += 1
        except SimulatedAPIError as error:
            return self.error_reply(call, error)
        return Reply(200, dumps(result), call.reply_headers, JSON_TYPE)

    def error_reply(self, call: Call, error: SimulatedAPIError) -> Reply:
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
            error = SimulatedAPIError("service_unavailable")
        elif kind is FaultKind.TASK_QUEUEING_ERROR:
            error = SimulatedAPIError(
                "task_queueing_error", {"details": "The task queue is unavailable (simulated)"}
            )
        elif kind is FaultKind.TASK_NOT_FOUND:
            error = SimulatedAPIError("task_not_found")
        elif kind is FaultKind.RATE_LIMIT:
            permitted = rule.total_permitted
            if permitted is None:
                identity_limit = call.identity.rate_limit if call.identity else None
                permitted = identity_limit or self.config.rate_limit or LIVE_DEFAULT_RATE_LIMIT
            retry_after = rule.retry_after
            error = SimulatedAPIError(
                "rate_limit_reached",
                {"total_permitted": permitted},
                headers=None if retry_after is None else {"Retry-After": _header(retry_after)},
            )
        else:
            raise ValueError(f"{kind} does not answer in place of the API")
        return self.error_reply(call, error)


def _allowed(remote: str | None, networks: Networks) -> bool:
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
