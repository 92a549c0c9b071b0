"""The client's options: :class:`ClientConfig` (every default, written once), the API token's
source and mask, and the deprecated ``timeout=`` spellings of ``request_timeout=`` (the client's)
and ``task_timeout=`` (its methods')."""

from __future__ import annotations

import os
import warnings

import attrs

from katapult_async._http import TransportConfig
from katapult_async._ratelimit import DEFAULT_PROBE_TIMEOUT, Pacing
from katapult_async._validate import validate_token
from katapult_async.errors import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "TOKEN_ENV_VAR",
    "ClientConfig",
    "mask_token",
    "request_timeout_arg",
    "task_timeout_arg",
    "token_from",
]

DEFAULT_BASE_URL = "https://api.katapult.io/core/v1"
TOKEN_ENV_VAR = "KATAPULT_API_TOKEN"


def mask_token(token: str) -> str:
    return "****" + token[-4:] if len(token) >= 20 else "****"


def token_from(token: str | None) -> str:
    """The token passed, else the one in ``KATAPULT_API_TOKEN``, validated."""
    if token is None:
        token = os.environ.get(TOKEN_ENV_VAR) or None
    if token is None:
        raise ConfigurationError(
            f"no API token: pass token=... or set the {TOKEN_ENV_VAR} environment variable"
        )
    return validate_token(token)


@attrs.frozen
class ClientConfig:
    """The client's options after normalisation, and the one place their defaults are written.

    :class:`KatapultClient` builds one from its arguments (``client.config``); its rate limiter,
    HTTP transport and task poller are built from it. The token is kept out of it, as of every
    value. Invalid options raise :class:`~katapult_async.errors.ConfigurationError`.
    """

    base_url: str = DEFAULT_BASE_URL
    rate_limit: int | None = None
    rate_limit_window: float = 60.0
    request_timeout: float = 30.0
    max_retries: int = 8
    poll_interval: float = 1.0
    max_poll_interval: float = 15.0
    max_response_size: int = 1024 * 1024
    allow_insecure_http: bool = False
    probe_timeout: float | None = DEFAULT_PROBE_TIMEOUT
    pacing: Pacing = "burst"
    reserve: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.pacing not in ("burst", "smooth"):
            raise ConfigurationError(f"pacing must be 'burst' or 'smooth', not {self.pacing!r}")
        if self.reserve is not None and not 0 <= self.reserve < 1:
            raise ConfigurationError("reserve must be a fraction of the limit in [0, 1)")
        if self.probe_timeout is not None and not 0 < self.probe_timeout < float("inf"):
            raise ConfigurationError("probe_timeout must be a positive number of seconds or None")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ConfigurationError("rate_limit must be a positive number of requests")
        if self.rate_limit_window <= 0:
            raise ConfigurationError("rate_limit_window must be positive")
        if self.request_timeout <= 0:
            raise ConfigurationError("request_timeout must be positive")
        if self.max_retries < 0:
            raise ConfigurationError("max_retries must be 0 or more")
        if self.poll_interval <= 0 or self.max_poll_interval < self.poll_interval:
            raise ConfigurationError("need 0 < poll_interval <= max_poll_interval")
        if self.max_response_size < 1024:
            raise ConfigurationError("max_response_size must be at least 1024 bytes")

    def transport_config(self) -> TransportConfig:
        """The options of the HTTP layer."""
        return TransportConfig(
            base_url=self.base_url,
            timeout=self.request_timeout,
            max_retries=self.max_retries,
            max_response_size=self.max_response_size,
        )

    @property
    def timeout(self) -> float:
        """Deprecated: :attr:`request_timeout` (warns; removed in 0.4)."""
        warnings.warn(
            "ClientConfig.timeout is deprecated: use request_timeout", DeprecationWarning, 2
        )
        return self.request_timeout


def request_timeout_arg(old: float | None, new: float) -> float:
    """``request_timeout``, taking the deprecated ``KatapultClient(timeout=)`` with a warning."""
    if old is None:
        return new
    warnings.warn(
        "KatapultClient(timeout=) is deprecated: use request_timeout= (seconds for each HTTP "
        "request)",
        DeprecationWarning,
        stacklevel=3,
    )
    return old


def task_timeout_arg(old: float | None, new: float | None) -> float | None:
    """``task_timeout``, taking the deprecated ``timeout`` spelling with a warning."""
    if old is None:
        return new
    warnings.warn(
        "timeout= is deprecated here: use task_timeout= (seconds to wait for the task)",
        DeprecationWarning,
        stacklevel=3,
    )
    if new is not None:
        raise TypeError("give task_timeout= only, not also the deprecated timeout=")
    return old
