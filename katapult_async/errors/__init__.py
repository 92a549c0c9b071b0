"""The error tree, the ``{code: class}`` table, and :func:`error_from_response`.

Every name is public here; the classes live in ``_base`` (the root, options, transport),
``_api`` (:class:`APIError` and a class per code), ``_runs`` (tasks, bulk runs, rollouts, reverts)
and the table and its reader in ``_table``.

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

from katapult_async.errors._api import (
    APIError,
    InvalidAPITokenError,
    InvalidCapabilitiesTokenError,
    InvalidResponseError,
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
from katapult_async.errors._api import (
    _rebuild_api_error as _rebuild_api_error,
)
from katapult_async.errors._base import (
    ConfigurationError,
    ConnectionFailedError,
    KatapultError,
    RequestTimeoutError,
    TransportError,
)
from katapult_async.errors._runs import (
    DriftedError,
    DuplicateItemError,
    JournalInUseError,
    NoPreviousProfileError,
    NothingToResumeError,
    RolloutHaltedError,
    RunAbortedError,
    RunHaltedError,
    TaskFailedError,
    TaskTimeoutError,
    UnconfirmedUpdateError,
    VerificationError,
)
from katapult_async.errors._runs import (
    _rebuild_halted as _rebuild_halted,
)
from katapult_async.errors._runs import (
    _rebuild_nothing_to_resume as _rebuild_nothing_to_resume,
)
from katapult_async.errors._table import (
    ERROR_CLASSES as ERROR_CLASSES,
)
from katapult_async.errors._table import (
    error_from_response,
)

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

# Defined in the submodules, public here: tracebacks, pickles and the ``error.type`` of a span
# name each class ``katapult_async.errors.<name>``, wherever it is defined.
for _name in (*__all__, "_rebuild_api_error", "_rebuild_halted", "_rebuild_nothing_to_resume"):
    globals()[_name].__module__ = __name__
del _name
