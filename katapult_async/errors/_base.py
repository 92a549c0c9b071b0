"""The root of the tree, :class:`KatapultError`, and the errors raised before or without an
answer: bad options (:class:`ConfigurationError`) and no answer (:class:`TransportError`)."""

from __future__ import annotations

from typing import Any


class KatapultError(Exception):
    """Base class of every error this library raises."""

    attempts: int = 1
    """How many attempts were made before this error was raised (set by the retry loop)."""


class ConfigurationError(KatapultError, ValueError):
    """The client was configured in a way that cannot work (no token, plain http to a remote host)."""


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
