"""A faithful Katapult Core API v1 simulator, for tests, benchmarks and demos.

:class:`KatapultSimulator` serves the speed-profile endpoints on a loopback port with the live
API's shapes, errors, rate limits and task lifecycle, and injects faults on demand::

    from katapult_async.testing import FaultKind, KatapultSimulator

    async with KatapultSimulator(rate_limit=100, rate_limit_window=2.0) as sim:
        ids = sim.add_interfaces(10)
        sim.inject(FaultKind.SERVICE_UNAVAILABLE, times=2)
        ...  # point a client at sim.base_url with sim.token

Served endpoints (under ``/core/v1``; ``<x>`` is a literal segment, ``_`` or an id):

* ``PATCH /virtual_machine_network_interfaces/<x>/update_speed_profile``
* ``GET /tasks/<x>`` (``?task[id]=`` or the id in the path)
* ``GET /virtual_machine_network_interfaces/<x>``
* ``GET /virtual_machines/<x>/network_interfaces`` (paginated)
* ``GET /organizations/<x>/network_speed_profiles`` (paginated)
* ``GET /organizations/<x>/virtual_machines`` (paginated; filtered by ``annotations[][key]`` /
  ``annotations[][value]``, every pair must match; organisations by id or sub-domain, with 404
  ``organization_not_found`` and 403 ``organization_suspended`` / ``organization_not_activated``)

Admin endpoints (no token, not rate limited, not logged), for use from another process:

* ``GET /_sim/state``: stats, ``interfaces`` (id -> speed profile id) and ``tasks`` (id ->
  status, outcome and times). Times named ``created``/``starts_at``/``finishes_at`` are on the
  simulator's clock (``time.monotonic``, comparable between processes on one Linux host); the
  ``*_wall`` ones are unix times (``time.time``), and ``clock`` gives both for now.
* ``GET /_sim/requests`` (the log; ``at`` and ``at_wall`` as above), ``DELETE /_sim/requests``.
* ``GET /_sim/interfaces`` (ids on the default VM; ``?virtual_machine_id=<id>|all``),
  ``POST /_sim/interfaces`` ``{"count", "speed_profile", "virtual_machine_id"}``.
* ``POST /_sim/virtual_machines`` ``{"name", "fqdn", "annotations": {key: value},
  "organization_id", "interfaces", "speed_profile"}``: a VM with ``interfaces`` interfaces
  (default 1); answers its ``virtual_machine`` (``id``, ``fqdn``) and ``interfaces`` ids.
* ``GET /_sim/faults``, ``POST /_sim/faults`` with ``KatapultSimulator.inject``'s arguments
  (``{"kind": "drop_connection", "times": 2, ...}``), ``DELETE /_sim/faults``.
* ``POST /_sim/reset_stats``.

Run it as a process with ``python -m katapult_async.testing --help``; it prints one JSON line
(``base_url``, ``admin_url``, ``token``, ``interfaces``) once listening. :func:`config_options`
lists the options of :class:`SimulatorConfig` that belong on a command line, for building one.

``SimulatedTaskStatus`` and ``SimulatedSpeedProfile`` were called ``TaskStatus`` and
``SpeedProfile``, names that read like the client's own; the old names still import, with a
:class:`DeprecationWarning`.
"""

import typing as _typing

from katapult_async._lazy import lazy_attributes as _lazy_attributes

if _typing.TYPE_CHECKING:  # at run time each name is imported on first use: see the end
    from ._config import (
        ConfigOption,
        ErrorEnvelope,
        OptionValue,
        RateLimitMode,
        SimulatorConfig,
        TaskProgress,
        config_options,
    )
    from ._faults import FaultKind, FaultRule
    from ._model import (
        ApiToken,
        Network,
        Organization,
        RecordedRequest,
        SimulatedInterface,
        SimulatedSpeedProfile,
        SimulatedTask,
        SimulatedTaskStatus,
        SimulatorStats,
        TaskOutcome,
        VirtualMachine,
    )
    from ._serve import build_parser, config_from_args, serve
    from ._simulator import KatapultSimulator

__all__ = [
    "ApiToken",
    "ConfigOption",
    "ErrorEnvelope",
    "FaultKind",
    "FaultRule",
    "KatapultSimulator",
    "Network",
    "OptionValue",
    "Organization",
    "RateLimitMode",
    "RecordedRequest",
    "SimulatedInterface",
    "SimulatedSpeedProfile",
    "SimulatedTask",
    "SimulatedTaskStatus",
    "SimulatorConfig",
    "SimulatorStats",
    "TaskOutcome",
    "TaskProgress",
    "VirtualMachine",
    "build_parser",
    "config_from_args",
    "config_options",
    "serve",
]

# Old names that read like the client's own (katapult_async.TaskStatus), kept for a while.
_DEPRECATED = {
    "SpeedProfile": "SimulatedSpeedProfile",
    "TaskStatus": "SimulatedTaskStatus",
}

if _typing.TYPE_CHECKING:
    SpeedProfile = SimulatedSpeedProfile
    TaskStatus = SimulatedTaskStatus


# Importing the package imports nothing more: pytest imports our plugin (a module of this package)
# whenever it starts, and the simulator needs aiohttp's server. A name imports its module on first
# use.
_public_attribute = _lazy_attributes(
    __name__, __all__, ("_config", "_faults", "_model", "_serve", "_simulator"), globals()
)


def __getattr__(name: str) -> object:
    new_name = _DEPRECATED.get(name)
    if new_name is None:
        return _public_attribute(name)
    import warnings

    warnings.warn(
        f"katapult_async.testing.{name} is deprecated; use {new_name}",
        DeprecationWarning,
        stacklevel=2,
    )
    return _public_attribute(new_name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
