"""katapult-async: change network speed profiles on Katapult from asyncio, fast and safely.

The public surface is re-exported here; implementation modules are private. See the README for a
quick start, :class:`KatapultClient` for the client, and :mod:`katapult_async.testing` for the API
simulator to use in your own tests.
"""

from katapult_async._ratelimit import RateLimiter, RateLimitState
from katapult_async._version import __version__
from katapult_async.bulk import (
    BulkProgress,
    DuplicateItemError,
    UnconfirmedUpdateError,
    UpdateItem,
)
from katapult_async.client import KatapultClient
from katapult_async.errors import (
    APIError,
    ConfigurationError,
    InvalidAPITokenError,
    InvalidCapabilitiesTokenError,
    InvalidResponseError,
    KatapultError,
    MissingAPITokenError,
    NetworkInterfaceNotFoundError,
    NotFoundError,
    RateLimitReachedError,
    RequestTimeoutError,
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
)
from katapult_async.models import (
    NetworkInterface,
    NetworkInterfaceRef,
    NetworkSpeedProfile,
    Outcome,
    SpeedProfileRef,
    Task,
    TaskStatus,
    UpdateResult,
)
from katapult_async.poller import PollerStats, TaskPoller

__all__ = [
    "APIError",
    "BulkProgress",
    "ConfigurationError",
    "DuplicateItemError",
    "InvalidAPITokenError",
    "InvalidCapabilitiesTokenError",
    "InvalidResponseError",
    "KatapultClient",
    "KatapultError",
    "MissingAPITokenError",
    "NetworkInterface",
    "NetworkInterfaceNotFoundError",
    "NetworkInterfaceRef",
    "NetworkSpeedProfile",
    "NotFoundError",
    "Outcome",
    "PollerStats",
    "RateLimitReachedError",
    "RateLimitState",
    "RateLimiter",
    "RequestTimeoutError",
    "ScopeNotGrantedError",
    "ServiceUnavailableError",
    "SpeedProfileAlreadyAssignedError",
    "SpeedProfileNotFoundError",
    "SpeedProfileRef",
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
    "__version__",
]
