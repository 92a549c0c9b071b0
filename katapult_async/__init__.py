"""katapult-async: change network speed profiles on Katapult from asyncio, fast and safely.

The public surface is re-exported here; implementation modules are private. See the README for a
quick start, :class:`KatapultClient` for the client, and :mod:`katapult_async.testing` for the API
simulator to use in your own tests.
"""

from katapult_async._ratelimit import RateLimiter, RateLimitSource, RateLimitState
from katapult_async._version import __version__
from katapult_async.bulk import SupportsBulkUpdate, bulk_update
from katapult_async.client import ClientConfig, KatapultClient
from katapult_async.errors import (
    APIError,
    ConfigurationError,
    DuplicateItemError,
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
    UnconfirmedUpdateError,
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
)
from katapult_async.poller import PollerStats, TaskPoller

__all__ = [
    "APIError",
    "BulkProgress",
    "ClientConfig",
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
    "RateLimitSource",
    "RateLimitState",
    "RateLimiter",
    "RequestTimeoutError",
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
    "__version__",
    "bulk_update",
]
