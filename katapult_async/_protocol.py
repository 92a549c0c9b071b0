"""Pure response decoding. No I/O, no aiohttp.

This module owns the meaning of what comes back: the HTTP layer sends an
:class:`~katapult_async._requests.APIRequest` and hands back ``(status, headers, body)``, which
:func:`decode_response` classifies (2xx data, a refused redirect, or the error it stands for, with a
429's ``Retry-After`` and the lost-response note of a 422) and the ``decode_*`` functions turn into
models. Requests are built in :mod:`katapult_async._requests`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, TypeVar

from katapult_async._convert import converter, structure_task
from katapult_async.errors import (
    APIError,
    InvalidResponseError,
    RateLimitReachedError,
    SpeedProfileAlreadyAssignedError,
    error_from_response,
)
from katapult_async.models import (
    NetworkInterface,
    NetworkSpeedProfile,
    Task,
    VirtualMachine,
)

T = TypeVar("T")


class ResponseMeta(NamedTuple):
    """What the client reads from the headers of every response.

    A named tuple rather than a frozen attrs class: one is made for every response, and a tuple
    is built several times faster. It is internal, immutable all the same.
    """

    status: int
    request_id: str | None = None
    permitted: int | None = None
    remaining: int | None = None
    retry_after: str | None = None


def _count(value: str | None) -> int | None:
    """A header's non-negative integer value, or None when absent or malformed."""
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def read_meta(status: int, headers: Mapping[str, str]) -> ResponseMeta:
    """Read the request id, the rate-limit headers and ``Retry-After`` (case-insensitive mapping)."""
    get = headers.get  # runs for every response: one attribute lookup, positional arguments
    return ResponseMeta(
        status,
        get("X-Request-Id"),
        _count(get("X-Ratelimit-Permitted")),
        _count(get("X-Ratelimit-Remaining")),
        get("Retry-After"),
    )


# The values seen in practice, answered without parsing (every response's type is checked).
_JSON_CONTENT_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})


def is_json_content_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` announces JSON (``application/json``, ``…+json``)."""
    if content_type in _JSON_CONTENT_TYPES:
        return True
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def decode_success(
    status: int, content_type: str | None, body: bytes, request_id: str | None
) -> Any:
    """Parse the JSON body of a 2xx response.

    Raises:
        InvalidResponseError: when the body is not JSON or not labelled as JSON.
    """
    if not is_json_content_type(content_type):
        raise InvalidResponseError(
            f"expected a JSON response, got Content-Type {content_type or 'none'!r}",
            status=status,
            request_id=request_id,
        )
    try:
        # JSON between systems is UTF-8 (RFC 8259): decoding it first skips json's encoding
        # detection on every response. A body that is not UTF-8 fails here (a ValueError too).
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise InvalidResponseError(
            f"the response body is not valid JSON ({exc})", status=status, request_id=request_id
        ) from exc


def decode_error(meta: ResponseMeta, body: bytes, reason: str | None = None) -> APIError:
    """The :class:`APIError` for a non-2xx response (never raises)."""
    return error_from_response(meta.status, body, request_id=meta.request_id, reason=reason)


def decode_response(
    meta: ResponseMeta,
    headers: Mapping[str, str],
    body: bytes,
    *,
    reason: str | None = None,
    after_lost_response: bool = False,
) -> Any:
    """What a response means: the JSON body of a 2xx; for anything else, the error it stands for.

    Args:
        meta: The response's :func:`read_meta`.
        headers: Its headers (a case-insensitive mapping): ``Content-Type``, ``Location``.
        body: The whole body.
        reason: The HTTP reason phrase, for errors whose body says nothing.
        after_lost_response: Whether an earlier attempt of this call (a PATCH) lost its response.
            A ``speed_profile_already_assigned`` answer then says so (``after_lost_response``):
            the lost attempt evidently landed.

    Raises:
        InvalidResponseError: for a redirect (never followed), or a 2xx body that is not JSON.
        APIError: (a subclass) for an error answer; a :class:`RateLimitReachedError` carries the
            ``Retry-After`` delay in seconds as ``retry_after``.
    """
    status = meta.status
    if 200 <= status < 300:
        return decode_success(status, headers.get("Content-Type"), body, meta.request_id)
    if 300 <= status < 400:
        location = headers.get("Location")
        raise InvalidResponseError(
            f"the API answered with a redirect to {location!r}; redirects are not followed",
            status=status,
            request_id=meta.request_id,
        )
    error = decode_error(meta, body, reason)
    if isinstance(error, RateLimitReachedError):
        error.retry_after = parse_retry_after(meta.retry_after)
    elif isinstance(error, SpeedProfileAlreadyAssignedError) and after_lost_response:
        error.after_lost_response = True
    raise error


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parses a ``Retry-After`` header into seconds to wait.

    Args:
        value: The header value: delay-seconds (``"120"``) or an HTTP date.
        now: The current time for an HTTP date; defaults to the current UTC time. A naive
            datetime is taken as UTC.

    Returns:
        The delay in seconds (an HTTP date in the past gives 0.0), or None if ``value`` is None
        or cannot be parsed.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _member(data: Any, key: str, meta: ResponseMeta | None) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise InvalidResponseError(
            f"the response has no {key!r} object",
            status=meta.status if meta else 200,
            request_id=meta.request_id if meta else None,
        )
    return data[key]


def structure(value: Any, cls: type[T], what: str, meta: ResponseMeta | None = None) -> T:
    """Structure ``value`` into ``cls``, mapping any failure to :class:`InvalidResponseError`."""
    try:
        return converter.structure(value, cls)
    except Exception as exc:  # cattrs raises several types (ClassValidationError, KeyError, ...)
        raise _not_understood(what, exc, meta) from exc


def _not_understood(what: str, exc: Exception, meta: ResponseMeta | None) -> InvalidResponseError:
    return InvalidResponseError(
        f"the response's {what} could not be understood: {_leaf_errors(exc)}",
        status=meta.status if meta else 200,
        request_id=meta.request_id if meta else None,
    )


def _leaf_errors(exc: BaseException) -> str:
    """``"Type: message"`` of ``exc``, or of each exception it groups (cattrs' class validation
    errors are exception groups), joined by ``"; "``."""
    subs = getattr(exc, "exceptions", None)
    if subs:
        return "; ".join(_leaf_errors(sub) for sub in subs)
    return f"{type(exc).__name__}: {exc}"


def decode_task(data: Any, meta: ResponseMeta | None = None) -> Task:
    """The :class:`Task` in a ``{"task": {...}}`` body."""
    value = _member(data, "task", meta)
    try:
        return structure_task(value)  # the converter's hook, without its dispatch: the hot path
    except Exception as exc:
        raise _not_understood("task", exc, meta) from exc


def decode_interface(data: Any, meta: ResponseMeta | None = None) -> NetworkInterface:
    """The interface in a ``{"virtual_machine_network_interface": {...}}`` body."""
    value = _member(data, "virtual_machine_network_interface", meta)
    return structure(value, NetworkInterface, "network interface", meta)


def decode_page(
    data: Any, key: str, cls: type[T], meta: ResponseMeta | None = None
) -> tuple[list[T], int]:
    """The items of one page of a list and the total number of pages."""
    items = _member(data, key, meta)
    if not isinstance(items, list):
        raise InvalidResponseError(
            f"the response's {key!r} is not a list",
            status=meta.status if meta else 200,
            request_id=meta.request_id if meta else None,
        )
    pagination = data.get("pagination") if isinstance(data, dict) else None
    total_pages = pagination.get("total_pages") if isinstance(pagination, dict) else None
    if not isinstance(total_pages, int) or isinstance(total_pages, bool):
        total_pages = 1
        # A "large set" has no total: a full page may have a next one.
        if isinstance(pagination, dict) and pagination.get("large_set") is True:
            current, per_page = pagination.get("current_page"), pagination.get("per_page")
            if isinstance(current, int) and isinstance(per_page, int) and len(items) >= per_page:
                total_pages = current + 1
    return [structure(item, cls, key, meta) for item in items], total_pages


def decode_speed_profiles(
    data: Any, meta: ResponseMeta | None = None
) -> tuple[list[NetworkSpeedProfile], int]:
    """One page of ``network_speed_profiles``."""
    return decode_page(data, "network_speed_profiles", NetworkSpeedProfile, meta)


def decode_virtual_machines(
    data: Any, meta: ResponseMeta | None = None
) -> tuple[list[VirtualMachine], int]:
    """One page of an organization's ``virtual_machines``."""
    return decode_page(data, "virtual_machines", VirtualMachine, meta)


def decode_interfaces(
    data: Any, meta: ResponseMeta | None = None
) -> tuple[list[NetworkInterface], int]:
    """One page of ``virtual_machine_network_interfaces``."""
    return decode_page(data, "virtual_machine_network_interfaces", NetworkInterface, meta)
