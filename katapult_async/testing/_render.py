"""The API's JSON for each simulated object, in the live API's shapes, and its JSON encoding.

Pure functions of the values in :mod:`._model` (and the :class:`~._world.World` that holds the
objects an interface refers to). The admin endpoints' own JSON lives in :mod:`._admin`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._model import (
    TASK_NAME,
    SimulatedInterface,
    SimulatedSpeedProfile,
    SimulatedTask,
    SimulatedTaskStatus,
    VirtualMachine,
)

if TYPE_CHECKING:
    from ._world import World


def dumps(value: object) -> bytes:
    """Encode compact JSON, as the live API sends it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def task_json(task: SimulatedTask, now: float) -> dict[str, Any]:
    """The API's ``Task`` object for ``task`` at clock time ``now``."""
    status = task.status_at(now)
    finished = status is SimulatedTaskStatus.COMPLETED or status is SimulatedTaskStatus.FAILED
    finishes_at_wall = task.finishes_at_wall
    return {
        "id": task.id,
        "name": TASK_NAME,
        "status": status.value,
        "created_at": int(task.created_wall),
        "started_at": None if status is SimulatedTaskStatus.PENDING else int(task.starts_at_wall),
        "finished_at": (
            int(finishes_at_wall) if finished and finishes_at_wall is not None else None
        ),
        "progress": task.progress_at(now),
    }


def new_task_json(task: SimulatedTask) -> dict[str, Any]:
    """The ``Task`` object in the update's own response: just queued, as the live API shows it."""
    return {
        "id": task.id,
        "name": TASK_NAME,
        "status": SimulatedTaskStatus.PENDING.value,
        "created_at": int(task.created_wall),
        "started_at": None,
        "finished_at": None,
        "progress": 0,
    }


def profile_json(profile: SimulatedSpeedProfile) -> dict[str, Any]:
    """The API's ``NetworkSpeedProfile`` object, as the speed-profile list shows it."""
    return {
        "id": profile.id,
        "name": profile.name,
        "upload_speed_in_mbit": profile.upload_speed_in_mbit,
        "download_speed_in_mbit": profile.download_speed_in_mbit,
        "permalink": profile.permalink,
    }


def interface_json(interface: SimulatedInterface, world: World) -> dict[str, Any]:
    """The API's full interface object, as ``GET .../virtual_machine_network_interface``."""
    vm = world.virtual_machines[interface.virtual_machine_id]
    network = world.networks[interface.network_id]
    profile = world.speed_profiles[interface.speed_profile_id]
    return {
        "id": interface.id,
        "virtual_machine": {"id": vm.id, "name": vm.name},
        "name": interface.name,
        "network": {"id": network.id, "name": network.name},
        "virtual_network": None,
        "mac_address": interface.mac_address,
        "state": "attached",
        "ip_addresses": [{"id": interface.ip_address_id, "address": interface.ip_address}],
        "speed_profile": {
            "id": profile.id,
            "name": profile.name,
            "permalink": profile.permalink,
        },
    }


def interface_summary_json(interface: SimulatedInterface, world: World) -> dict[str, Any]:
    """An interface as the VM's interface list shows it: no VM, MAC, state or speed profile."""
    network = world.networks[interface.network_id]
    return {
        "id": interface.id,
        "name": interface.name,
        "network": {"id": network.id, "name": network.name},
        "virtual_network": None,
        "ip_addresses": [{"id": interface.ip_address_id, "address": interface.ip_address}],
    }


def virtual_machine_json(vm: VirtualMachine) -> dict[str, Any]:
    """A VM as the organisation's VM list shows it (no zone, package or addresses simulated)."""
    return {
        "id": vm.id,
        "name": vm.name,
        "hostname": vm.hostname,
        "fqdn": vm.fqdn,
        "created_at": vm.created_at,
        "zone": None,
        "package": None,
        "gpu_type": None,
        "ip_addresses": [],
        "hypervisor": None,
    }
