"""The simulator's options: one frozen :class:`SimulatorConfig`, and their command-line form.

Every option is listed once, as a field of :class:`SimulatorConfig`. A field's metadata carries
its short help text and, for options that make sense on a command line, the flag spelling.
:func:`config_options` turns those fields into :class:`ConfigOption` values, from which
``python -m katapult_async.testing`` builds its argparse options and the ``katapult-async`` CLI
its click options.
"""

from __future__ import annotations

import functools
import ipaddress
import time
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

RateLimitMode = Literal["fixed", "sliding"]
"""How requests are counted against a token's rate limit: aligned fixed windows or a sliding one."""

ErrorEnvelope = Literal["wrapped", "flat"]
"""Error body shape: ``{"error": {...}}`` as the live API sends, or flat as the docs show."""

TaskProgress = Literal["rising", "live"]
"""How a running task's progress moves: rising from 5 to 95, or a flat 5 as the live API reports."""

OptionValue = bool | int | float | str
"""The type of a value given on a command line."""

_METADATA_KEY = "katapult_async.testing.option"


@attrs.frozen
class _OptionMetadata:
    help: str
    flag: str | None
    flag_value: OptionValue | None


def _option(
    help: str, flag: str | None = None, *, flag_value: OptionValue | None = None
) -> Mapping[str, _OptionMetadata]:
    """Field metadata: ``help``, and ``flag`` if the option belongs on a command line.

    A ``bool`` option's flag is a switch to the opposite of the default; ``flag_value`` makes
    any other option's flag a switch to that value (``--flat-errors``).
    """
    return {_METADATA_KEY: _OptionMetadata(help, flag, flag_value)}


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


def _profile_names(value: object) -> tuple[str, ...]:
    """``fail_profiles`` as a tuple: from an iterable of names, or a comma-separated string."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, typing.Iterable):
        raise TypeError(f"fail_profiles must be names of speed profiles, got {value!r}")
    names = tuple(str(name).strip() for name in value)
    return tuple(name for name in names if name)


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
        task_no_change_rate: Share of tasks that end ``completed`` but change nothing: the
            interface is put back on its previous profile when the task ends, so that reading
            it back shows the old profile (to try a rollout's verification).
        fail_profiles: Speed profiles (ids or permalinks) whose tasks always end ``failed``
            (the interface then reverts), to make a rollout to a bad target fail on purpose. A
            string is read as a comma-separated list.
        task_polls: Count task reads instead of time: a task reports ``running`` until its
            ``task_polls``-th read (a ``GET`` of the task that reaches it, not one answered by an
            injected fault), which reports it ``completed``, or ``failed`` as drawn with
            ``task_failure_rate`` (1.0 fails every task). ``task_duration`` and its jitter are
            then ignored. None (the default) runs tasks on the clock.
        task_progress: How a task reports ``progress``: 0 while ``pending`` and 100 once
            ``completed`` either way. ``"rising"``: 5 when it starts running, rising linearly to
            95 (by the clock, or by reads with ``task_polls``). ``"live"``: 0 pending, 5 running,
            100 completed, as recorded from the live API. A failed task keeps the progress it had.
        seed: Seed of the one :class:`random.Random` behind every random choice (durations,
            outcomes, fault probabilities, the generated token), so runs replay.
        latency: Seconds added before every API response.
        record_requests: Keep a log of API requests (``KatapultSimulator.requests``).
        max_recorded_requests: Most log entries kept (oldest dropped first); None for no bound.
        clock: Monotonic clock, in seconds, for task scheduling and rate-limit windows.
        wall_clock: Wall clock, in unix seconds, for timestamps in task bodies and admin output.
    """

    host: str = attrs.field(default="127.0.0.1", metadata=_option("address to listen on", "--host"))
    port: int = attrs.field(
        default=0,
        validator=attrs.validators.ge(0),
        metadata=_option("port; 0 picks a free one", "--port"),
    )
    allow_non_loopback: bool = attrs.field(
        default=False, metadata=_option("permit a non-loopback --host", "--allow-non-loopback")
    )
    token: str | None = attrs.field(
        default=None, metadata=_option("the default API token (default: generated)", "--token")
    )
    organization_sub_domain: str = attrs.field(
        default="acme", metadata=_option("sub-domain of the simulated organisation")
    )
    rate_limit: int | None = attrs.field(
        default=None,
        validator=_optional_positive_int,
        metadata=_option("requests per window per token (default: unlimited)", "--rate-limit"),
    )
    rate_limit_window: float = attrs.field(
        default=60.0,
        validator=attrs.validators.gt(0),
        metadata=_option("rate-limit window in seconds", "--window"),
    )
    rate_limit_mode: RateLimitMode = attrs.field(
        default="fixed",
        validator=attrs.validators.in_(typing.get_args(RateLimitMode)),
        metadata=_option("rate-limit windows", "--mode"),
    )
    rate_limit_headers: bool = attrs.field(
        default=True, metadata=_option("omit the X-Ratelimit-* headers", "--no-rate-headers")
    )
    error_envelope: ErrorEnvelope = attrs.field(
        default="wrapped",
        validator=attrs.validators.in_(typing.get_args(ErrorEnvelope)),
        metadata=_option("flat error bodies, as in the docs", "--flat-errors", flag_value="flat"),
    )
    task_duration: float = attrs.field(
        default=2.0,
        validator=_non_negative,
        metadata=_option("seconds per task", "--task-duration"),
    )
    task_duration_jitter: float = attrs.field(
        default=0.0,
        validator=_fraction,
        metadata=_option("task duration jitter fraction", "--task-jitter"),
    )
    task_start_delay: float | None = attrs.field(
        default=None,
        validator=_optional_non_negative,
        metadata=_option("seconds pending (default: duration / 4)", "--task-start-delay"),
    )
    task_failure_rate: float = attrs.field(
        default=0.0,
        validator=_fraction,
        metadata=_option("share of tasks that fail", "--failure-rate"),
    )
    task_never_finish_rate: float = attrs.field(
        default=0.0,
        validator=_fraction,
        metadata=_option("share of tasks that never end", "--never-finish-rate"),
    )
    task_no_change_rate: float = attrs.field(
        default=0.0,
        validator=_fraction,
        metadata=_option("share of tasks that complete but change nothing", "--no-change-rate"),
    )
    fail_profiles: tuple[str, ...] = attrs.field(
        default=(),
        converter=_profile_names,
        metadata=_option("a speed profile whose tasks fail (repeatable)", "--fail-profile"),
    )
    task_polls: int | None = attrs.field(
        default=None,
        validator=_optional_positive_int,
        metadata=_option("task reads until a task ends (default: by the clock)"),
    )
    task_progress: TaskProgress = attrs.field(
        default="rising",
        validator=attrs.validators.in_(typing.get_args(TaskProgress)),
        metadata=_option("progress of a running task", "--task-progress"),
    )
    seed: int | None = attrs.field(
        default=None, metadata=_option("seed for every random choice", "--seed")
    )
    latency: float = attrs.field(
        default=0.0,
        validator=_non_negative,
        metadata=_option("seconds added before every response", "--latency"),
    )
    record_requests: bool = attrs.field(
        default=True, metadata=_option("do not keep a request log", "--no-record")
    )
    max_recorded_requests: int | None = attrs.field(
        default=50_000,
        validator=_optional_positive_int,
        metadata=_option("request log size", "--max-recorded"),
    )
    clock: Callable[[], float] = attrs.field(
        default=time.monotonic, metadata=_option("monotonic clock for tasks and rate limits")
    )
    wall_clock: Callable[[], float] = attrs.field(
        default=time.time, metadata=_option("wall clock for timestamps")
    )

    def __attrs_post_init__(self) -> None:
        rates = self.task_failure_rate + self.task_never_finish_rate + self.task_no_change_rate
        if rates > 1.0:
            raise ValueError(
                "task_failure_rate + task_never_finish_rate + task_no_change_rate must not exceed 1"
            )
        if not self.allow_non_loopback and not is_loopback_host(self.host):
            raise ValueError(
                f"refusing to listen on non-loopback host {self.host!r}; "
                "pass allow_non_loopback=True to override"
            )


@attrs.frozen(kw_only=True)
class ConfigOption:
    """One command-line option of :class:`SimulatorConfig`, as :func:`config_options` lists it.

    A front end turns each into one option whose parsed value is passed on as
    ``SimulatorConfig(**{option.name: value})``.

    Attributes:
        name: The :class:`SimulatorConfig` field (and ``KatapultSimulator`` keyword), e.g.
            ``"rate_limit_window"``; use it as the option's destination or parameter name.
        flag: The flag spelling, e.g. ``"--window"``.
        type: The type of the option's value: ``bool``, ``int``, ``float`` or ``str``. Without
            ``is_flag``, parse the flag's argument with it.
        default: The field's default. None where the config gives None a meaning (no rate limit,
            a generated token, ...), which ``help`` then names.
        help: A short lowercase phrase with no final period. It names no default other than
            None's meaning, so front ends may show the default their own way.
        choices: The values allowed (from the field's ``Literal`` type), or None for any.
        multiple: The flag may be given more than once; the option's value is the tuple of its
            arguments (``--fail-profile 1gbps --fail-profile 10mbps``).
        is_flag: The flag takes no argument: given, it sets the option to ``flag_value``;
            absent, the option keeps ``default``. ``bool`` options are such switches to the
            opposite of their default (``--no-rate-headers`` sets ``rate_limit_headers`` to
            False), and ``--flat-errors`` sets ``error_envelope`` to ``"flat"``.
        flag_value: The value a switch sets; None unless ``is_flag``.

    Example, for click (``argparse`` works the same way with ``action="store_const"``)::

        for option in reversed(config_options()):
            if option.is_flag:
                kwargs = {"flag_value": option.flag_value}
            elif option.choices:
                kwargs = {"type": click.Choice(option.choices)}
            else:
                kwargs = {"type": option.type}
            command = click.option(
                option.flag, option.name, default=option.default, help=option.help, **kwargs
            )(command)
    """

    name: str
    flag: str
    type: type[OptionValue]
    default: OptionValue | None
    help: str
    choices: tuple[str, ...] | None = None
    is_flag: bool = False
    flag_value: OptionValue | None = None
    multiple: bool = False


@functools.cache
def config_options() -> tuple[ConfigOption, ...]:
    """The options of :class:`SimulatorConfig` that belong on a command line, in field order.

    The fields left out (``organization_sub_domain``, ``task_polls``, ``clock``, ``wall_clock``)
    keep their defaults. Values are not range-checked here: :class:`SimulatorConfig` raises
    :class:`ValueError` for bad ones, with a message that names the field.

    Returns:
        One :class:`ConfigOption` per command-line option, each naming its field.
    """
    hints = typing.get_type_hints(SimulatorConfig)
    options = []
    for field in attrs.fields(SimulatorConfig):
        metadata = field.metadata.get(_METADATA_KEY)
        if metadata is None or metadata.flag is None:
            continue
        value_type, choices, multiple = _value_type(hints[field.name])
        flag_value = metadata.flag_value
        if value_type is bool:
            flag_value = not field.default
        options.append(
            ConfigOption(
                name=field.name,
                flag=metadata.flag,
                type=value_type,
                default=field.default,
                help=metadata.help,
                choices=choices,
                is_flag=flag_value is not None,
                flag_value=flag_value,
                multiple=multiple,
            )
        )
    return tuple(options)


def _value_type(hint: object) -> tuple[type[OptionValue], tuple[str, ...] | None, bool]:
    """The value type, choices and whether repeatable, of a field typed ``T``, ``T | None``,
    ``Literal[...]`` or ``tuple[T, ...]``."""
    if typing.get_origin(hint) is Literal:
        return str, typing.get_args(hint), False
    if typing.get_origin(hint) is tuple:
        value_type, _ = _value_type(typing.get_args(hint)[0])[:2]
        return value_type, None, True
    (value_type,) = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    if value_type not in (bool, int, float, str):
        raise TypeError(f"a command-line option cannot be of type {hint!r}")
    return typing.cast("type[OptionValue]", value_type), None, False
