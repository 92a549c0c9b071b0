"""The one ``{code: class}`` table, :data:`ERROR_CLASSES`, and :func:`error_from_response`,
which reads an error answer (both envelopes) into the class of its code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from katapult_async.errors._api import (
    APIError,
    InvalidAPITokenError,
    InvalidCapabilitiesTokenError,
    MissingAPITokenError,
    NetworkInterfaceNotFoundError,
    NotFoundError,
    ObjectInTrashError,
    OrganizationNotActivatedError,
    OrganizationNotFoundError,
    OrganizationSuspendedError,
    RateLimitReachedError,
    ScopeNotGrantedError,
    ServiceUnavailableError,
    SpeedProfileAlreadyAssignedError,
    SpeedProfileNotFoundError,
    TaskNotFoundError,
    TaskQueueingError,
    UnauthorizedNetworkForAPITokenError,
    VirtualMachineNotFoundError,
)

ERROR_CLASSES: Mapping[str, type[APIError]] = {
    cls.code_name: cls
    for cls in (
        MissingAPITokenError,
        InvalidAPITokenError,
        InvalidCapabilitiesTokenError,
        UnauthorizedNetworkForAPITokenError,
        ScopeNotGrantedError,
        NetworkInterfaceNotFoundError,
        SpeedProfileNotFoundError,
        TaskNotFoundError,
        OrganizationNotFoundError,
        OrganizationSuspendedError,
        OrganizationNotActivatedError,
        VirtualMachineNotFoundError,
        ObjectInTrashError,
        TaskQueueingError,
        SpeedProfileAlreadyAssignedError,
        RateLimitReachedError,
        ServiceUnavailableError,
    )
    if cls.code_name is not None
}
"""The one table from API error code to exception class."""

_MAX_SNIPPET = 200


def _class_for(code: str | None, status: int) -> type[APIError]:
    if code is not None:
        cls = ERROR_CLASSES.get(code)
        if cls is not None:
            return cls
        if code.endswith("_not_found"):
            return NotFoundError
    return APIError


def _prefixed(reason: str | None, text: str) -> str:
    return f"{reason}: {text}" if reason else text


def _snippet(body: bytes) -> str:
    text = body[:_MAX_SNIPPET].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text + ("…" if len(body) > _MAX_SNIPPET else "")


def error_from_response(
    status: int, body: bytes | Any, *, request_id: str | None = None, reason: str | None = None
) -> APIError:
    """Build the :class:`APIError` subclass for an error response.

    Reads the live API's wrapped envelope (``{"error": {"code", "description", "detail"}}``) and the
    documentation's flat one (``{"code", "description", "detail"}``). A body that is not JSON, or is
    JSON of another shape (an HTML 502 from a proxy, say), yields a plain :class:`APIError` whose
    description says what came back. Never raises.

    Args:
        status: The HTTP status.
        body: The raw body bytes, or an already-decoded JSON value.
        request_id: The ``X-Request-Id`` response header.
        reason: The HTTP reason phrase, used when the body says nothing.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body)
        if not raw.strip():
            return APIError(_prefixed(reason, "empty body"), status=status, request_id=request_id)
        try:
            data: Any = json.loads(raw)
        except (ValueError, RecursionError):
            return APIError(
                _prefixed(reason, f"non-JSON body: {_snippet(raw)}"),
                status=status,
                request_id=request_id,
            )
    else:
        data = body
    envelope = data.get("error") if isinstance(data, dict) else None
    if not isinstance(envelope, dict):
        envelope = data if isinstance(data, dict) else None
    code = envelope.get("code") if envelope is not None else None
    if not isinstance(code, str) or not code:
        return APIError(
            _prefixed(reason, "no error code in the body"),
            status=status,
            request_id=request_id,
        )
    assert envelope is not None
    description = envelope.get("description")
    if not isinstance(description, str):
        description = reason or "no description"
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        detail = {}
    cls = _class_for(code, status)
    return cls(description, status=status, code=code, detail=detail, request_id=request_id)
