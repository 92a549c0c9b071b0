"""The error tree, the ``{code: class}`` table, and :func:`error_from_response`.

::

    KatapultError
    ├── ConfigurationError (also ValueError)      bad client options: no token, insecure URL
    ├── APIError                                  the API (or a proxy) answered with an error
    │   ├── MissingAPITokenError                  400 missing_api_token
    │   ├── InvalidAPITokenError                  403 invalid_api_token
    │   ├── InvalidCapabilitiesTokenError         403 invalid_capabilities_token
    │   ├── UnauthorizedNetworkForAPITokenError   403 .ip_address
    │   ├── ScopeNotGrantedError                  403 .scopes
    │   ├── OrganizationSuspendedError            403 organization_suspended
    │   ├── OrganizationNotActivatedError         403 organization_not_activated
    │   ├── NotFoundError                         any *_not_found
    │   │   ├── NetworkInterfaceNotFoundError     404
    │   │   ├── SpeedProfileNotFoundError         404
    │   │   ├── TaskNotFoundError                 404
    │   │   ├── OrganizationNotFoundError         404
    │   │   └── VirtualMachineNotFoundError       404
    │   ├── ObjectInTrashError                    406 object_in_trash, .trash_object
    │   ├── TaskQueueingError                     406 .details (transient)
    │   ├── SpeedProfileAlreadyAssignedError      422 .after_lost_response
    │   ├── RateLimitReachedError                 429 .total_permitted, .retry_after
    │   ├── ServiceUnavailableError               503
    │   └── InvalidResponseError                  a response the client cannot understand
    ├── TransportError (also ConnectionError)     the request did not get an answer
    │   ├── ConnectionFailedError                 no connection: refused, unknown host ...
    │   └── RequestTimeoutError (also TimeoutError)
    ├── TaskFailedError                           .task ended ``failed``
    ├── TaskTimeoutError (also TimeoutError)      .task, .waited
    ├── DuplicateItemError (also ValueError)      bulk: .interface_id repeated at .index
    ├── UnconfirmedUpdateError                    bulk: the update landed, its confirmation failed
    ├── VerificationError                         rollout: read back, the interface has another profile
    ├── DriftedError                              revert: changed since the run; .expected, .actual
    ├── NoPreviousProfileError                    revert: the journal has no previous profile
    ├── JournalInUseError                         bulk: another run holds the journal's lock
    ├── NothingToResumeError (also ValueError)    bulk: resume=True, but no unfinished run
    └── RunHaltedError                            bulk: the run halted, .reason (SKIPPED items)
        ├── RunAbortedError                       bulk: .cause no item can escape (bad token ...)
        └── RolloutHaltedError                    rollout: canary or threshold; .failures

Every :class:`APIError` carries ``status``, ``code``, ``description``, ``detail`` and the
``request_id`` (the ``X-Request-Id`` header Katapult's support asks for). Errors raised after retries
also carry ``attempts``. No error message ever contains the API token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from katapult_async._task import Task

__all__ = [
    "APIError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DriftedError",
    "DuplicateItemError",
    "InvalidAPITokenError",
    "InvalidCapabilitiesTokenError",
    "InvalidResponseError",
    "JournalInUseError",
    "KatapultError",
    "MissingAPITokenError",
    "NetworkInterfaceNotFoundError",
    "NoPreviousProfileError",
    "NotFoundError",
    "NothingToResumeError",
    "ObjectInTrashError",
    "OrganizationNotActivatedError",
    "OrganizationNotFoundError",
    "OrganizationSuspendedError",
    "RateLimitReachedError",
    "RequestTimeoutError",
    "RolloutHaltedError",
    "RunAbortedError",
    "RunHaltedError",
    "ScopeNotGrantedError",
    "ServiceUnavailableError",
    "SpeedProfileAlreadyAssignedError",
    "SpeedProfileNotFoundError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskQueueingError",
    "TaskTimeoutError",
    "TransportError",
    "UnauthorizedNetworkForAPITokenError",
    "UnconfirmedUpdateError",
    "VerificationError",
    "VirtualMachineNotFoundError",
    "error_from_response",
]


class KatapultError(Exception):
    """Base class of every error this library raises."""

    attempts: int = 1
    """How many attempts were made before this error was raised (set by the retry loop)."""


class ConfigurationError(KatapultError, ValueError):
    """The client was configured in a way that cannot work (no token, plain http to a remote host)."""


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


class TransportError(KatapultError, ConnectionError):
    """The request got no answer: the connection failed or was dropped."""


class ConnectionFailedError(TransportError):
    """No connection to the API could be made: refused, a host name that does not resolve, a host
    that cannot be reached, a TLS handshake that failed.

    Attributes:
        url: The base URL the client was connecting to.
        reason: What went wrong, in plain words (``"connection refused"``).
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot connect to {url}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, self.reason), {"attempts": self.attempts})


class RequestTimeoutError(TransportError, TimeoutError):
    """The request got no answer within the client's ``timeout``."""


class TaskFailedError(KatapultError):
    """The task ended with status ``failed``. ``task`` is the final task."""

    def __init__(self, task: Task) -> None:
        self.task = task
        super().__init__(f"task {task.id} ({task.name or 'unnamed'}) failed")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task,))


class TaskTimeoutError(KatapultError, TimeoutError):
    """The task did not finish in time.

    Attributes:
        task: The last task observed (or ``None`` if it was never seen).
        waited: Seconds waited before giving up.
    """

    def __init__(self, task: Task | None, waited: float, task_id: str | None = None) -> None:
        self.task = task
        self.waited = waited
        ident = task.id if task is not None else task_id
        state = f", last seen {task.status.value} at {task.progress}%" if task is not None else ""
        super().__init__(f"task {ident} did not finish within {waited:.1f}s{state}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task, self.waited))


class DuplicateItemError(KatapultError, ValueError):
    """An interface appeared again in the same bulk run; only its first item is sent.

    Attributes:
        interface_id: The repeated interface id.
        index: The position of the repeated item.
        first_index: The position of the item that is being (or was) sent.
    """

    def __init__(self, interface_id: str, index: int, first_index: int) -> None:
        self.interface_id = interface_id
        self.index = index
        self.first_index = first_index
        super().__init__(
            f"item {index}: interface {interface_id} duplicates item {first_index} "
            "(each interface is updated at most once per run)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id, self.index, self.first_index))


class UnconfirmedUpdateError(KatapultError):
    """The update landed, but its response was lost and the confirmation could not be made.

    A PATCH whose response was lost (a dropped connection, a timeout) was retried and the API
    answered ``speed_profile_already_assigned``: the lost attempt evidently made the assignment,
    but the client never learnt the id of the task that carries it out, and a task that fails
    puts the interface's previous profile back. The bulk engine confirms such an update itself:
    it waits out the task horizon and sends the PATCH again (``already_assigned`` again: the
    assignment held; accepted: the unseen task failed, and the new task is followed). Only when
    that confirming PATCH itself fails (its retries exhausted) is the item an ``ERROR`` with this
    error (its ``__cause__`` is the last answer or failure). A rerun confirms it the same way.

    Attributes:
        interface_id: The interface whose update is unconfirmed.
        speed_profile: The profile asked for, as given.
    """

    def __init__(self, interface_id: str, speed_profile: str) -> None:
        self.interface_id = interface_id
        self.speed_profile = speed_profile
        super().__init__(
            f"interface {interface_id}: the update to {speed_profile} was applied but its "
            "response was lost, and the update could not be confirmed; rerun to confirm"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id, self.speed_profile))


class VerificationError(KatapultError):
    """A rollout read an updated interface back and found another profile than the one set.

    The task completed, but the interface does not have the requested profile (a task that did
    nothing, or a change made in between): the item's result is an ``ERROR`` with this error.

    Attributes:
        interface_id: The interface read back.
        expected: The profile requested (id or permalink, as given).
        actual: The profile the interface has (its permalink, else its id; ``None`` for none).
    """

    def __init__(self, interface_id: str, expected: str, actual: str | None) -> None:
        self.interface_id = interface_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"interface {interface_id}: read back after its task completed, it has "
            f"{actual or 'no speed profile'}, not {expected}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id, self.expected, self.actual))


class DriftedError(KatapultError):
    """A revert found the interface changed since the run: it is left alone (``SKIPPED``).

    The interface has neither the profile the run set nor the one before it, so someone else
    changed it in between; ``force=True`` reverts it anyway.

    Attributes:
        interface_id: The interface.
        expected: The profile the run set (as journaled).
        actual: The profile it has now (its permalink, else its id; ``None`` for none).
        previous: The profile the revert would have put back.
    """

    def __init__(self, interface_id: str, expected: str, actual: str | None, previous: str) -> None:
        self.interface_id = interface_id
        self.expected = expected
        self.actual = actual
        self.previous = previous
        super().__init__(
            f"interface {interface_id}: has {actual or 'no speed profile'}, the run set "
            f"{expected}; changed since, so not reverted to {previous} (force to revert it)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id, self.expected, self.actual, self.previous))


class NoPreviousProfileError(KatapultError):
    """A revert has no previous profile for an interface the run changed (``SKIPPED``).

    The journaled run did not record one: apply a plan, or use ``record_previous=True``.

    Attributes:
        interface_id: The interface.
    """

    def __init__(self, interface_id: str) -> None:
        self.interface_id = interface_id
        super().__init__(
            f"interface {interface_id}: no previous profile was recorded, so it cannot be reverted"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.interface_id,))


class JournalInUseError(KatapultError):
    """Another bulk run holds the journal: one journal serves one run at a time.

    Raised when a bulk run starts, before anything is sent, if another run (in this process or
    another) holds the journal file's exclusive advisory lock.

    Attributes:
        path: The journal file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"journal {path} is in use by another bulk run; wait for it to end or use another "
            "journal"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path,))


class NothingToResumeError(KatapultError, ValueError):
    """A bulk run was asked to resume (``resume=True``), but its journal holds no unfinished run.

    Raised when the run starts, before anything is sent: the journal's last run finished (every
    item got its result), or the journal is missing or empty. Without ``resume=True`` such a run
    starts a new run instead.

    Attributes:
        path: The journal file.
        finished: True when the journal's last run finished; False when it records no run.
    """

    def __init__(self, path: str, *, finished: bool) -> None:
        self.path = path
        self.finished = finished
        why = "its last run finished" if finished else "it records no run"
        super().__init__(
            f"journal {path}: {why}, so there is nothing to resume; "
            "run without resume to start a new run"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_nothing_to_resume, (self.path, self.finished))


def _rebuild_nothing_to_resume(path: str, finished: bool) -> NothingToResumeError:
    return NothingToResumeError(path, finished=finished)


class RunHaltedError(KatapultError):
    """A bulk run halted: the error of every item it skipped (``Outcome.SKIPPED``).

    A halted run starts no new update; the items already in flight end (their tasks are awaited);
    every item not yet started gets exactly one ``SKIPPED`` result whose ``error`` is this error.
    The journal records the run as ``halted``, so a rerun resumes it, and the run's last
    :class:`~katapult_async.models.BulkProgress` carries it as ``halted``. Subclasses say why.

    Attributes:
        reason: Why the run halted, in one line.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the run halted: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class RunAbortedError(RunHaltedError):
    """A bulk run stopped at an error that no other item could escape.

    That is a missing or invalid API token, a token not allowed from this address or without the
    scope, or an API that cannot be reached once the client's retries are spent: every further
    request would fail the same way. The run halts at once (see :class:`RunHaltedError`); fix the
    cause and rerun with the same journal to resume.

    Attributes:
        cause: The error that stopped the run (also its ``__cause__``).
        reason: The cause's message.
    """

    def __init__(self, cause: KatapultError) -> None:
        self.cause = cause
        super().__init__(" ".join(str(cause).split()) or type(cause).__name__)
        self.__cause__ = cause

    def __str__(self) -> str:
        return f"the run stopped: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cause,))


class RolloutHaltedError(RunHaltedError):
    """A rollout halted (its canary, or its failure threshold): the error of every item it did
    not start (``SKIPPED``, nothing sent).

    Rerunning with the same journal resumes the run: the skipped items are sent then.

    Attributes:
        reason: Why the run halted, in a sentence (``"canary item vmnet_... failed"``, ...).
        failures: The failures counted when it halted.
        finished: The items finished (this run's, through the rollout) when it halted.
    """

    def __init__(self, reason: str, *, failures: int, finished: int) -> None:
        self.failures = failures
        self.finished = finished
        super().__init__(reason)

    def __str__(self) -> str:
        return (
            f"rollout halted: {self.reason} ({self.failures} failed of {self.finished} "
            "finished); not started (rerun with the same journal to resume)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_halted, (type(self), self.reason, self.failures, self.finished))


def _rebuild_halted(
    cls: type[RolloutHaltedError], reason: str, failures: int, finished: int
) -> RolloutHaltedError:
    return cls(reason, failures=failures, finished=finished)


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
