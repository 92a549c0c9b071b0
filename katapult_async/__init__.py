"""katapult-async: change network speed profiles on Katapult from asyncio, fast and safely.

The public surface is re-exported here; implementation modules are private. See the README for a
quick start, :class:`KatapultClient` for the client, and :mod:`katapult_async.testing` for the API
simulator to use in your own tests.
"""

import typing as _typing

from katapult_async._version import __version__

if _typing.TYPE_CHECKING:  # at run time each name is imported on first use: see the end
    from katapult_async._plan import PlanAction, PlanItem, PlanTarget
    from katapult_async._ratelimit import Pacing, RateLimiter, RateLimitSource, RateLimitState
    from katapult_async._rollout import CanaryCallback, CanaryReport, Rollout
    from katapult_async.bulk import SupportsBulkUpdate, bulk_update
    from katapult_async.client import ClientConfig, KatapultClient
    from katapult_async.errors import (
        APIError,
        ConfigurationError,
        ConnectionFailedError,
        DriftedError,
        DuplicateItemError,
        InvalidAPITokenError,
        InvalidCapabilitiesTokenError,
        InvalidResponseError,
        JournalInUseError,
        KatapultError,
        MissingAPITokenError,
        NetworkInterfaceNotFoundError,
        NoPreviousProfileError,
        NotFoundError,
        NothingToResumeError,
        ObjectInTrashError,
        OrganizationNotActivatedError,
        OrganizationNotFoundError,
        OrganizationSuspendedError,
        RateLimitReachedError,
        RequestTimeoutError,
        RolloutHaltedError,
        RunAbortedError,
        RunHaltedError,
        ScopeNotGrantedError,
        ServiceUnavailableError,
        SpeedProfileAlreadyAssignedError,
        SpeedProfileNotFoundError,
        TaskFailedError,
        TaskNotFoundError,
        TaskQueueingError,
        TaskTimeoutError,
        TransportError,
        UnauthorizedNetworkForAPITokenError,
        UnconfirmedUpdateError,
        VerificationError,
        VirtualMachineNotFoundError,
    )
    from katapult_async.models import (
        BulkProgress,
        NetworkInterface,
        NetworkInterfaceRef,
        NetworkSpeedProfile,
        Outcome,
        SpeedProfileRef,
        Task,
        TaskStatus,
        UpdateItem,
        UpdateResult,
        VirtualMachine,
    )
    from katapult_async.poller import PollerStats, TaskPoller

__all__ = [
    "APIError",
    "BulkProgress",
    "CanaryCallback",
    "CanaryReport",
    "ClientConfig",
    "ConfigurationError",
    "ConnectionFailedError",
    "DriftedError",
    "DuplicateItemError",
    "InvalidAPITokenError",
    "InvalidCapabilitiesTokenError",
    "InvalidResponseError",
    "JournalInUseError",
    "KatapultClient",
    "KatapultError",
    "MissingAPITokenError",
    "NetworkInterface",
    "NetworkInterfaceNotFoundError",
    "NetworkInterfaceRef",
    "NetworkSpeedProfile",
    "NoPreviousProfileError",
    "NotFoundError",
    "NothingToResumeError",
    "ObjectInTrashError",
    "OrganizationNotActivatedError",
    "OrganizationNotFoundError",
    "OrganizationSuspendedError",
    "Outcome",
    "Pacing",
    "PlanAction",
    "PlanItem",
    "PlanTarget",
    "PollerStats",
    "RateLimitReachedError",
    "RateLimitSource",
    "RateLimitState",
    "RateLimiter",
    "RequestTimeoutError",
    "Rollout",
    "RolloutHaltedError",
    "RunAbortedError",
    "RunHaltedError",
    "ScopeNotGrantedError",
    "ServiceUnavailableError",
    "SpeedProfileAlreadyAssignedError",
    "SpeedProfileNotFoundError",
    "SpeedProfileRef",
    "SupportsBulkUpdate",
    "Task",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskPoller",
    "TaskQueueingError",
    "TaskStatus",
    "TaskTimeoutError",
    "TransportError",
    "UnauthorizedNetworkForAPITokenError",
    "UnconfirmedUpdateError",
    "UpdateItem",
    "UpdateResult",
    "VerificationError",
    "VirtualMachine",
    "VirtualMachineNotFoundError",
    "__version__",
    "bulk_update",
]

if not _typing.TYPE_CHECKING:  # hidden from type checkers, which see the imports above
    from katapult_async._lazy import lazy_attributes as _lazy_attributes

    # Importing the package imports nothing more (pytest imports our plugin, under this package,
    # whenever it starts); a name imports the module that defines it on first use.
    __getattr__ = _lazy_attributes(
        __name__,
        __all__,
        ("errors", "models", "_ratelimit", "client", "bulk", "poller", "_plan", "_rollout"),
        globals(),
        submodules=("bulk", "client", "errors", "models", "poller", "testing"),
    )

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
