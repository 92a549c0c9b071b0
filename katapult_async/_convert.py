"""The one cattrs converter: every API body is structured here, and nowhere else."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import cattrs

from katapult_async._validate import validate_identifier
from katapult_async.models import (
    NetworkInterface,
    NetworkSpeedProfile,
    Outcome,
    Task,
    TaskStatus,
    VirtualMachine,
)

__all__ = ["converter", "structure_task"]


# Unix seconds already converted: the tasks of a bulk run carry the same few seconds over and
# over, and datetimes are immutable, so they are shared. Cleared when full, not evicted one by one.
_TIMES: dict[int | float, datetime] = {}
_TIMES_MAX = 1024


def _unix_to_utc(value: Any, _: type) -> datetime | None:
    if value is None:
        return None
    when = _TIMES.get(value) if type(value) in (int, float) else None
    if when is not None:
        return when
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected unix seconds, got {type(value).__name__}")
    when = datetime.fromtimestamp(value, tz=timezone.utc)  # raises for NaN or out of range
    if len(_TIMES) >= _TIMES_MAX:
        _TIMES.clear()
    _TIMES[value] = when
    return when


_STATUSES = {status.value: status for status in TaskStatus}


def _status(value: Any) -> TaskStatus:
    status = _STATUSES.get(value) if isinstance(value, str) else None
    return TaskStatus(value) if status is None else status  # TaskStatus() raises for the rest


def structure_task(data: Any, _: type = Task) -> Task:
    """The converter's hook for :class:`Task`, which ``_protocol.decode_task`` calls directly."""
    # Written out rather than generated: every PATCH and every poll decodes a task, and this is
    # several times faster than cattrs' generated function with its per-field hook dispatch. The
    # rules are the same: ``id`` required; absent fields take the model's defaults; ``None`` is
    # accepted only where the model allows it; strings, integers and times strictly typed.
    if not isinstance(data, dict):
        raise TypeError(f"a task must be an object, got {type(data).__name__}")
    get = data.get
    name = get("name")
    created_at = get("created_at")
    started_at = get("started_at")
    finished_at = get("finished_at")
    return Task(
        id=validate_identifier(_str(data["id"]), what="task id"),
        name=None if name is None else _str(name),
        status=_status(data["status"]) if "status" in data else TaskStatus.PENDING,
        created_at=None if created_at is None else _unix_to_utc(created_at, datetime),
        started_at=None if started_at is None else _unix_to_utc(started_at, datetime),
        finished_at=None if finished_at is None else _unix_to_utc(finished_at, datetime),
        progress=_structure_int(data["progress"], int) if "progress" in data else 0,
    )


def _utc_to_unix(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def _structure_interface(data: Any, _: type) -> NetworkInterface:
    if not isinstance(data, dict):
        raise TypeError("a network interface must be an object")
    vm = data.get("virtual_machine")
    network = data.get("network")
    profile = data.get("speed_profile")
    return NetworkInterface(
        id=validate_identifier(_str(data["id"]), what="interface id"),
        name=_opt_str(data.get("name")),
        virtual_machine_id=_opt_str(vm.get("id")) if isinstance(vm, dict) else None,
        network_id=_opt_str(network.get("id")) if isinstance(network, dict) else None,
        mac_address=_opt_str(data.get("mac_address")),
        state=_opt_str(data.get("state")),
        speed_profile=(
            converter.structure(profile, NetworkSpeedProfile) if isinstance(profile, dict) else None
        ),
        virtual_machine_name=_opt_str(vm.get("name")) if isinstance(vm, dict) else None,
    )


def _structure_vm(data: Any, _: type) -> VirtualMachine:
    # The list's VMs carry much more (zone, package, IP addresses); only these fields are read.
    if not isinstance(data, dict):
        raise TypeError("a virtual machine must be an object")
    created_at = data.get("created_at")
    return VirtualMachine(
        id=validate_identifier(_str(data["id"]), what="virtual machine id"),
        name=_opt_str(data.get("name")),
        hostname=_opt_str(data.get("hostname")),
        fqdn=_opt_str(data.get("fqdn")),
        created_at=None if created_at is None else _unix_to_utc(created_at, datetime),
    )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _structure_int(value: Any, _: type) -> int:
    # cattrs' default int hook calls int(), which would accept "12" and 1.9; the API sends integers.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _structure_str(value: Any, _: type) -> str:
    return _str(value)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(datetime | None, _unix_to_utc)
    conv.register_unstructure_hook(datetime, _utc_to_unix)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(TaskStatus, lambda v, _: TaskStatus(v))
    # Outcome is a str too: without its own hook the strict str hook would take any string.
    conv.register_structure_hook(Outcome, lambda v, _: Outcome(v))
    conv.register_structure_hook(NetworkInterface, _structure_interface)
    conv.register_structure_hook(Task, structure_task)
    conv.register_structure_hook(VirtualMachine, _structure_vm)
    return conv


converter = _make_converter()
"""The converter used for every API body and for the bulk journal's records."""
