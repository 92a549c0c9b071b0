"""The API's argument grammar and its error catalogue, as the live API (on Apia) has them.

Arguments: query parameters (``task[id]=...``) and the JSON body are merged, the body winning, as
Rack and Apia do. A lookup argument set (``speed_profile`` with ``id`` or ``permalink``) names
exactly one key; a lookup missing from both falls back to the path segment (``/tasks/<id>``,
``/_/`` or the literal segment name), which is how both URL styles of the live API work. Bad
arguments get Apia's errors: 400 ``invalid_json_body``, ``missing_required_argument`` and
``invalid_argument`` (with ``detail.issue`` ``missing_lookup_value`` when a lookup names no key,
``ambiguous_lookup_values`` when it names more than one, e.g. both ``id`` and ``permalink``).

Errors: every code the simulator sends, with its status and the live API's description, and
:class:`SimulatedAPIError`, which request handling raises to answer with one of them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

# code -> (status, description); None where the description names the request's own details.
ERRORS: dict[str, tuple[int, str | None]] = {
    "route_not_found": (404, None),
    "missing_api_token": (
        400,
        "No API token was provided in the Authorization header. "
        "Ensure a token is provided prefixed with Bearer",
    ),
    "invalid_api_token": (
        403,
        "The API token provided was not valid (it may not exist or have expired)",
    ),
    "unauthorized_network_for_api_token": (
        403,
        "Network is not allowed to access the API with this API token",
    ),
    "scope_not_granted": (
        403,
        "The scope required for this endpoint has not been granted to the authenticating identity",
    ),
    "rate_limit_reached": (429, "You have reached the rate limit for this type of request"),
    "service_unavailable": (
        503,
        "The service is currently unavailable, please try again later",
    ),
    "task_queueing_error": (
        406,
        "This error means that a background task that was needed to complete your request "
        "could not be queued",
    ),
    "speed_profile_already_assigned": (
        422,
        "This network speed profile is already assigned to this virtual machine network interface.",
    ),
    "task_not_found": (
        404,
        "No task was found matching any of the criteria provided in the arguments",
    ),
    "virtual_machine_network_interface_not_found": (
        404,
        "No network interface was found matching any of the criteria provided in the arguments",
    ),
    "network_speed_profile_not_found": (
        404,
        "No network speed profile was found matching any of the criteria provided in the arguments",
    ),
    "virtual_machine_not_found": (
        404,
        "No virtual machine was found matching any of the criteria provided in the arguments",
    ),
    "organization_not_found": (
        404,
        "No organization was found matching any of the criteria provided in the arguments",
    ),
    "organization_suspended": (
        403,
        "An organization was found from the arguments provided but it was suspended",
    ),
    "organization_not_activated": (
        403,
        "An organization was found from the arguments provided but it wasn't activated yet",
    ),
    "invalid_json_body": (400, "The JSON body provided with this request is invalid"),
    "invalid_argument": (400, None),
    "missing_required_argument": (400, None),
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

_INTEGER = re.compile(r"\s*-?\d+\s*")
_MAX_PER_PAGE = 200


class SimulatedAPIError(Exception):
    """An error response of the simulated API, raised inside request handling.

    Attributes:
        status: The HTTP status, from :data:`ERRORS`.
        code: The error code, a key of :data:`ERRORS`.
        description: The catalogue's description unless one was given.
        detail: The error's ``detail`` object.
        headers: Extra response headers, or None.
    """

    def __init__(
        self,
        code: str,
        detail: Mapping[str, Any] | None = None,
        *,
        description: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        status, known_description = ERRORS[code]
        self.status = status
        self.code = code
        self.description = known_description if description is None else description
        self.detail = {} if detail is None else dict(detail)
        self.headers = headers


def _missing_argument(name: str) -> SimulatedAPIError:
    return SimulatedAPIError(
        "missing_required_argument",
        {"path": [name], "argument": {"name": name, "description": None}},
        description=f"The '{name}' argument is required but has not been provided",
    )


def _scalar(value: object) -> str:
    # Apia's string scalar turns numbers and booleans into their text.
    if isinstance(value, str):
        return value
    return json.dumps(value)


def merge_arguments(query: Mapping[str, str], body: Any) -> dict[str, Any]:
    """Merge bracketed query parameters and a JSON object body (which wins), as Rack and Apia do."""
    arguments: dict[str, Any] = {}
    for key, value in query.items():  # a multi-dict's items() has every repeated key
        bracket = key.find("[")
        if bracket > 0 and key[bracket:].startswith("[][") and key.endswith("]"):
            # Rack's array of hashes: ``a[][k]=1&a[][v]=2&a[][k]=3`` is [{k: 1, v: 2}, {k: 3}];
            # a key already in the last hash starts the next one.
            items = arguments.get(key[:bracket])
            if not isinstance(items, list):
                items = arguments[key[:bracket]] = []
            inner = key[bracket + 3 : -1]
            if not items or inner in items[-1]:
                items.append({})
            items[-1][inner] = value
        elif bracket > 0 and key.endswith("]"):
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


class Arguments:
    """The arguments of one request to one endpoint, read by the grammar above.

    Args:
        endpoint_id: The endpoint's Apia id, e.g. ``"get:task"``, which argument errors name.
        query: The query parameters.
        body: The decoded JSON body, or None.
    """

    __slots__ = ("_endpoint_id", "_values")

    def __init__(self, endpoint_id: str, query: Mapping[str, str], body: Any) -> None:
        self._endpoint_id = endpoint_id
        self._values = merge_arguments(query, body)

    def lookup(
        self, name: str, keys: tuple[str, ...], route_value: str | None
    ) -> tuple[str, str | None]:
        """Resolve a lookup argument set to its one ``(key, value)``; value None finds nothing.

        Args:
            name: The argument set, e.g. ``"speed_profile"``.
            keys: Its keys, e.g. ``("id", "permalink")``; the first is the route value's.
            route_value: The path segment to fall back on, or None if the set is required.

        Raises:
            SimulatedAPIError: ``missing_required_argument`` or ``invalid_argument``.
        """
        arguments = self._values
        if name not in arguments:
            if route_value is None:
                raise _missing_argument(name)
            return keys[0], route_value
        raw = arguments[name]
        if raw is None:
            raise _missing_argument(name)
        if not isinstance(raw, dict):
            raise self._invalid([name], "object_expected")
        given: list[tuple[str, str | None]] = []
        for key in keys:
            if key in raw:
                value = raw[key]
                if isinstance(value, (dict, list)):
                    raise self._invalid([name, key], "invalid_scalar")
                given.append((key, None if value is None else _scalar(value)))
        if not given:
            raise self._invalid([name], "missing_lookup_value")
        present = [item for item in given if item[1] is not None]
        if len(present) > 1:
            raise self._invalid([name], "ambiguous_lookup_values")
        return present[0] if present else given[0]

    def positive_integer(self, name: str, default: int, maximum: int | None = None) -> int:
        """Read an optional integer argument that must be positive (and at most ``maximum``)."""
        raw = self._values.get(name)
        if raw is None:
            return default
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and _INTEGER.fullmatch(raw):
            value = int(raw)
        else:
            raise self._invalid([name], "parse_error", ["Integer must only contain numeric values"])
        errors = []
        if value <= 0:
            errors.append("greater_than_zero")
        if maximum is not None and value > maximum:
            errors.append("less_than_or_equal_to_one_hundred")
        if errors:
            raise self._invalid([name], "validation_errors", errors)
        return value

    def key_values(self, name: str) -> tuple[tuple[str, str], ...]:
        """Read an optional array of ``{key, value}`` objects (``annotations``) as pairs.

        Raises:
            SimulatedAPIError: ``invalid_argument`` for anything but such an array.
        """
        raw = self._values.get(name)
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self._invalid([name], "array_expected")
        pairs = []
        for item in raw:
            if not isinstance(item, dict) or "key" not in item:
                raise self._invalid([name, "key"], "missing_required_argument")
            key, value = item.get("key"), item.get("value")
            if isinstance(key, (dict, list)) or isinstance(value, (dict, list)):
                raise self._invalid([name], "invalid_scalar")
            pairs.append((_scalar(key), "" if value is None else _scalar(value)))
        return tuple(pairs)

    def page(self, items: Sequence[Any]) -> tuple[Sequence[Any], dict[str, Any]]:
        """Return the page of ``items`` that ``page`` and ``per_page`` ask for, and its
        ``pagination`` object."""
        page = self.positive_integer("page", 1)
        per_page = self.positive_integer("per_page", 30, _MAX_PER_PAGE)
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

    def _invalid(
        self, path: Sequence[str], issue: str, errors: Sequence[str] = ()
    ) -> SimulatedAPIError:
        path_string = ".".join(path)
        return SimulatedAPIError(
            "invalid_argument",
            {
                "path": list(path),
                "index": None,
                "issue": issue,
                "issue_description": _ISSUE_DESCRIPTIONS.get(issue),
                "errors": list(errors),
                "argument": {
                    "id": f"{self._endpoint_id}/{path_string}",
                    "name": path[-1],
                    "description": None,
                },
            },
            description=f"The '{path_string}' argument is invalid",
        )
