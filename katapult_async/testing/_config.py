"""The simulator's options, normalised once into a frozen value."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any, Literal

import attrs

RateLimitMode = Literal["fixed", "sliding"]
"""How requests are counted against a token's rate limit: aligned fixed windows or a sliding one."""

ErrorEnvelope = Literal["wrapped", "flat"]
"""Error body shape: ``{"error": {...}}`` as the live API sends, or flat as the docs show."""


def is_loopback_host(host: str) -> bool:
    """Tell whether ``host`` names a loopback interface.

    Args:
        host: A host name or IP address literal.

    Returns:
        True for ``localhost`` and loopback addresses such as ``127.0.0.1`` and ``::1``.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fraction(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


def _optional_non_negative(
    _instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


def _optional_positive_int(
    _instance: object, attribute: attrs.Attribute[Any], value: int | None
) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be at least 1 or None, got {value!r}")


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """Every option of :class:`~katapult_async.testing.KatapultSimulator`.

    ``KatapultSimulator(**options)`` builds one of these; ``KatapultSimulator.from_config(config)``
    takes one directly, and :func:`attrs.evolve` derives variants.

    Attributes:
        host: Address to listen on. Only loopback addresses are accepted unless
            ``allow_non_loopback`` is true.
        port: TCP port; 0 picks a free ephemeral port.
        allow_non_loopback: Permit listening on a non-loopback address.
        token: The default full-scope API token; None generates one.
        organization_sub_domain: Sub-domain of the simulated organisation.
        rate_limit: Requests per window per token, or None for no limit. Every request made with a
            valid token counts, including those answered with 429 and injected faults.
        rate_limit_window: Window length in seconds (the live API uses 60).
        rate_limit_mode: ``"fixed"``: windows aligned to multiples of ``rate_limit_window`` on
            ``clock``, so the budget refills at boundaries as the live API's does each minute.
            ``"sliding"``: a request is refused when ``rate_limit`` requests already arrived in
            the last ``rate_limit_window`` seconds.
        rate_limit_headers: Send ``X-Ratelimit-Permitted`` and ``X-Ratelimit-Remaining`` on every
            response made with a valid token (as the live API does). False imitates a server that
            only reveals the limit in the 429 body. No headers are sent while ``rate_limit`` is
            None.
        error_envelope: ``"wrapped"`` error bodies (live API) or ``"flat"`` ones (the docs).
        task_duration: Seconds from a task's creation until it finishes; 0 finishes at once.
        task_duration_jitter: Fraction by which each task's duration varies, uniformly
            (0.3 means +-30 %).
        task_start_delay: Seconds a task stays ``pending`` before it runs; None means a quarter of
            its duration. Never longer than the duration.
        task_failure_rate: Share of tasks that end ``failed``; the interface then reverts.
        task_never_finish_rate: Share of tasks that stay ``running`` forever.
        seed: Seed of the one :class:`random.Random` behind every random choice (durations,
            outcomes, fault probabilities, the generated token), so runs replay.
        latency: Seconds added before every API response.
        record_requests: Keep a log of API requests (``KatapultSimulator.requests``).
        max_recorded_requests: Most log entries kept (oldest dropped first); None for no bound.
        clock: Monotonic clock, in seconds, for task scheduling and rate-limit windows.
        wall_clock: Wall clock, in unix seconds, for timestamps in task bodies and admin output.
    """

    host: str = "127.0.0.1"
    port: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    allow_non_loopback: bool = False
    token: str | None = None
    organization_sub_domain: str = "acme"
    rate_limit: int | None = attrs.field(default=None, validator=_optional_positive_int)
    rate_limit_window: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    rate_limit_mode: RateLimitMode = attrs.field(
        default="fixed", validator=attrs.validators.in_(("fixed", "sliding"))
    )
    rate_limit_headers: bool = True
    error_envelope: ErrorEnvelope = attrs.field(
        default="wrapped", validator=attrs.validators.in_(("wrapped", "flat"))
    )
    task_duration: float = attrs.field(default=2.0, validator=_non_negative)
    task_duration_jitter: float = attrs.field(default=0.0, validator=_fraction)
    task_start_delay: float | None = attrs.field(default=None, validator=_optional_non_negative)
    task_failure_rate: float = attrs.field(default=0.0, validator=_fraction)
    task_never_finish_rate: float = attrs.field(default=0.0, validator=_fraction)
    seed: int | None = None
    latency: float = attrs.field(default=0.0, validator=_non_negative)
    record_requests: bool = True
    max_recorded_requests: int | None = attrs.field(
        default=50_000, validator=_optional_positive_int
    )
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time

    def __attrs_post_init__(self) -> None:
        if self.task_failure_rate + self.task_never_finish_rate > 1.0:
            raise ValueError("task_failure_rate + task_never_finish_rate must not exceed 1")
        if not self.allow_non_loopback and not is_loopback_host(self.host):
            raise ValueError(
                f"refusing to listen on non-loopback host {self.host!r}; "
                "pass allow_non_loopback=True to override"
            )
