"""The errors of an answer: :class:`APIError` and a class per API error code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from katapult_async.errors._base import KatapultError


class APIError(KatapultError):
    """The API, or a proxy in front of it, answered with an error.

    Attributes:
        status: The HTTP status code.
        code: The API's error code (``"task_not_found"``), or ``None`` for a body without one.
        description: The API's human-readable description.
        detail: The error's ``detail`` object (``{}`` when absent).
        request_id: The response's ``X-Request-Id``, for Katapult's support.
    """

    code_name: ClassVar[str | None] = None

    def __init__(
        self,
        description: str,
        *,
        status: int,
        code: str | None = None,
        detail: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.description = description
        self.detail: Mapping[str, Any] = detail if detail is not None else {}
        self.request_id = request_id
        self._read_detail(self.detail)
        super().__init__(self._message())

    def _read_detail(self, detail: Mapping[str, Any]) -> None:
        """Subclasses copy the fields of ``detail`` they document into attributes."""

    def _message(self) -> str:
        head = f"{self.code}: {self.description}" if self.code else self.description
        tail = f"HTTP {self.status}"
        if self.request_id:
            tail += f", request id {self.request_id}"
        return f"{head} ({tail})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_api_error,
            (
                type(self),
                self.description,
                self.status,
                self.code,
                dict(self.detail),
                self.request_id,
            ),
            {"attempts": self.attempts, **self._extra_state()},
        )

    def _extra_state(self) -> dict[str, Any]:
        """Attributes set after construction that a pickled copy must keep."""
        return {}


def _rebuild_api_error(
    cls: type[APIError],
    description: str,
    status: int,
    code: str | None,
    detail: dict[str, Any],
    request_id: str | None = None,
) -> APIError:
    return cls(description, status=status, code=code, detail=detail, request_id=request_id)


class MissingAPITokenError(APIError):
    """400 ``missing_api_token``: no ``Authorization: Bearer`` header reached the API."""

    code_name = "missing_api_token"


class InvalidAPITokenError(APIError):
    """403 ``invalid_api_token``: the token does not exist or has expired."""

    code_name = "invalid_api_token"


class InvalidCapabilitiesTokenError(APIError):
    """403 ``invalid_capabilities_token``."""

    code_name = "invalid_capabilities_token"


class UnauthorizedNetworkForAPITokenError(APIError):
    """403: the token may not be used from this network. ``ip_address`` is the caller's address."""

    code_name = "unauthorized_network_for_api_token"
    ip_address: str | None = None

    def _read_detail(self, detail: Mapping[str, Any]) -> None:
        value = detail.get("ip_address")
        self.ip_address = value if isinstance(value, str) else None


class ScopeNotGrantedError(APIError):
    """403: the token lacks a scope. ``scopes`` lists the scopes that would allow the call."""

    code_name = "scope_not_granted"
    scopes: tuple[str, ...] = ()

    def _read_detail(self, detail: Mapping[str, Any]) -> None:
        value = detail.get("scopes")
        if isinstance(value, list):
            self.scopes = tuple(str(s) for s in value)


class NotFoundError(APIError):
    """404: the object looked up does not exist."""


class NetworkInterfaceNotFoundError(NotFoundError):
    """404 ``virtual_machine_network_interface_not_found``."""

    code_name = "virtual_machine_network_interface_not_found"


class SpeedProfileNotFoundError(NotFoundError):
    """404 ``network_speed_profile_not_found``."""

    code_name = "network_speed_profile_not_found"


class TaskNotFoundError(NotFoundError):
    """404 ``task_not_found``."""

    code_name = "task_not_found"


class OrganizationNotFoundError(NotFoundError):
    """404 ``organization_not_found``: no organization has that id or sub-domain."""

    code_name = "organization_not_found"


class OrganizationSuspendedError(APIError):
    """403 ``organization_suspended``: the organization exists but is suspended."""

    code_name = "organization_suspended"


class OrganizationNotActivatedError(APIError):
    """403 ``organization_not_activated``: the organization exists but is not activated yet."""

    code_name = "organization_not_activated"


class VirtualMachineNotFoundError(NotFoundError):
    """404 ``virtual_machine_not_found``: no virtual machine has that id or FQDN."""

    code_name = "virtual_machine_not_found"


class ObjectInTrashError(APIError):
    """406 ``object_in_trash``: the object is in the trash; restore it to use it.

    ``trash_object`` is the ``detail.trash_object`` the API sent (``None`` if absent).
    """

    code_name = "object_in_trash"
    trash_object: Mapping[str, Any] | None = None

    def _read_detail(self, detail: Mapping[str, Any]) -> None:
        value = detail.get("trash_object")
        self.trash_object = value if isinstance(value, dict) else None


class TaskQueueingError(APIError):
    """406 ``task_queueing_error``: the background task could not be queued (transient).

    ``details`` is the server's extra explanation, if any.
    """

    code_name = "task_queueing_error"
    details: str | None = None

    def _read_detail(self, detail: Mapping[str, Any]) -> None:
        value = detail.get("details")
        self.details = value if isinstance(value, str) else None


class SpeedProfileAlreadyAssignedError(APIError):
    """422: the interface already has this speed profile; the desired state holds.

    ``after_lost_response`` is True when this answer came to a retry of a PATCH whose first response
    was lost: the first attempt evidently made the change.
    """

    code_name = "speed_profile_already_assigned"
    after_lost_response: bool = False

    def _extra_state(self) -> dict[str, Any]:
        return {"after_lost_response": self.after_lost_response}


class RateLimitReachedError(APIError):
    """429 ``rate_limit_reached``.

    Attributes:
        total_permitted: The token's limit per minute, from ``detail.total_permitted``.
        retry_after: Seconds from the ``Retry-After`` header, when the server sent one.
    """

    code_name = "rate_limit_reached"
    total_permitted: int | None = None
    retry_after: float | None = None

    def _read_detail(self, detail: Mapping[str, Any]) -> None:
        value = detail.get("total_permitted")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            self.total_permitted = value

    def _extra_state(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}


class ServiceUnavailableError(APIError):
    """503 ``service_unavailable`` (transient)."""

    code_name = "service_unavailable"


class InvalidResponseError(APIError):
    """The response could not be understood: not JSON, the wrong shape, too large, or a redirect."""
