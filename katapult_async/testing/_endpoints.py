"""The served endpoints: the route and scopes of each, and what each does and answers.

Served under ``/core/v1`` (``<x>`` is a literal segment, ``_`` or an id):

* ``PATCH /virtual_machine_network_interfaces/<x>/update_speed_profile``
* ``GET /tasks/<x>``
* ``GET /virtual_machine_network_interfaces/<x>``
* ``GET /virtual_machines/<x>/network_interfaces`` (paginated)
* ``GET /organizations/<x>/network_speed_profiles`` (paginated)
* ``GET /organizations/<x>/virtual_machines`` (paginated; ``annotations[][key]`` /
  ``annotations[][value]`` filter, every pair must match)

:class:`Endpoints` does the endpoint's own work once :mod:`._api` has authenticated the request and
checked its scopes: it reads the arguments, raises the endpoint's errors (404 ``..._not_found``,
422 ``speed_profile_already_assigned``) and returns the body of a 200.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._args import Arguments, SimulatedAPIError
from ._model import Organization, SimulatedInterface
from ._render import (
    interface_json,
    interface_summary_json,
    new_task_json,
    profile_json,
    task_json,
    virtual_machine_json,
)
from ._world import World

API_PREFIX = "/core/v1"

_INTERFACE = "virtual_machine_network_interface"

T = TypeVar("T")


class Endpoint(enum.Enum):
    """The API operations the simulator serves, valued by their Apia endpoint ids."""

    UPDATE_SPEED_PROFILE = "patch:virtual_machine_network_interface_update_speed_profile"
    GET_TASK = "get:task"
    GET_INTERFACE = "get:v_m_n_i__v_m_n_i"
    LIST_VM_INTERFACES = "get:virtual_machine_network_interfaces"
    LIST_SPEED_PROFILES = "get:organization_network_speed_profiles"
    LIST_ORGANIZATION_VMS = "get:organization_virtual_machines"


# (method, collection segment, action segment or None) -> endpoint; the middle segment is the
# lookup's route value.
_ROUTES = {
    ("PATCH", "virtual_machine_network_interfaces", "update_speed_profile"): (
        Endpoint.UPDATE_SPEED_PROFILE
    ),
    ("GET", "tasks", None): Endpoint.GET_TASK,
    ("GET", "virtual_machine_network_interfaces", None): Endpoint.GET_INTERFACE,
    ("GET", "virtual_machines", "network_interfaces"): Endpoint.LIST_VM_INTERFACES,
    ("GET", "organizations", "network_speed_profiles"): Endpoint.LIST_SPEED_PROFILES,
    ("GET", "organizations", "virtual_machines"): Endpoint.LIST_ORGANIZATION_VMS,
}

SCOPES: dict[Endpoint, tuple[str, ...]] = {
    Endpoint.UPDATE_SPEED_PROFILE: ("virtual_machines",),
    Endpoint.GET_TASK: ("tasks", "tasks:read"),
    Endpoint.GET_INTERFACE: ("virtual_machines", "virtual_machines:read"),
    Endpoint.LIST_VM_INTERFACES: ("virtual_machines", "virtual_machines:read"),
    Endpoint.LIST_SPEED_PROFILES: (),
    Endpoint.LIST_ORGANIZATION_VMS: ("virtual_machines", "virtual_machines:read"),
}
"""The scopes of each endpoint, any one of which grants access; the speed-profile list needs
only a valid token."""


def route(method: str, path: str) -> tuple[Endpoint, str] | None:
    """Return the endpoint and route value (the lookup segment) for a request, or None."""
    if not path.startswith(API_PREFIX + "/"):
        return None
    parts = path[len(API_PREFIX) + 1 :].split("/")
    if len(parts) == 2:
        endpoint = _ROUTES.get((method, parts[0], None))
    elif len(parts) == 3:
        endpoint = _ROUTES.get((method, parts[0], parts[2]))
    else:
        return None
    if endpoint is None or not parts[1]:
        return None
    return endpoint, parts[1]


def _find(tables: Mapping[str, Mapping[str, T]], key: str, value: str | None) -> T | None:
    """The object a resolved lookup ``(key, value)`` names, from the table for ``key``."""
    return None if value is None else tables[key].get(value)


_Handler = Callable[[Arguments, str, float], dict[str, Any]]


class Endpoints:
    """The endpoints' work over one :class:`World`.

    Args:
        world: The state the endpoints read and change.
        wall_clock: Unix time, for the tasks an update creates.
    """

    def __init__(self, world: World, wall_clock: Callable[[], float]) -> None:
        self._world = world
        self._wall_clock = wall_clock
        self._handlers: dict[Endpoint, _Handler] = {
            Endpoint.UPDATE_SPEED_PROFILE: self._update_speed_profile,
            Endpoint.GET_TASK: self._get_task,
            Endpoint.GET_INTERFACE: self._get_interface,
            Endpoint.LIST_VM_INTERFACES: self._list_vm_interfaces,
            Endpoint.LIST_SPEED_PROFILES: self._list_speed_profiles,
            Endpoint.LIST_ORGANIZATION_VMS: self._list_organization_vms,
        }

    def handle(
        self, endpoint: Endpoint, arguments: Arguments, route_value: str, now: float
    ) -> dict[str, Any]:
        """Carry out an authorised request at clock time ``now`` and return the 200's body.

        Raises:
            SimulatedAPIError: An argument error, or the endpoint's own.
        """
        return self._handlers[endpoint](arguments, route_value, now)

    def _interface(self, interface_id: str | None) -> SimulatedInterface:
        interface = None if interface_id is None else self._world.interfaces.get(interface_id)
        if interface is None:
            raise SimulatedAPIError("virtual_machine_network_interface_not_found")
        return interface

    def _update_speed_profile(
        self, arguments: Arguments, route_value: str, now: float
    ) -> dict[str, Any]:
        world = self._world
        # Both argument sets are read before either is looked up: argument errors come first.
        _, interface_id = arguments.lookup(_INTERFACE, ("id",), route_value)
        key, value = arguments.lookup("speed_profile", ("id", "permalink"), None)
        interface = self._interface(interface_id)
        profiles = {"id": world.speed_profiles, "permalink": world.profiles_by_permalink}
        profile = _find(profiles, key, value)
        if profile is None:
            raise SimulatedAPIError("network_speed_profile_not_found")
        if interface.speed_profile_id == profile.id:
            raise SimulatedAPIError("speed_profile_already_assigned")
        task = world.create_task(interface, profile, now, self._wall_clock())
        return {"task": new_task_json(task)}

    def _get_task(self, arguments: Arguments, route_value: str, now: float) -> dict[str, Any]:
        _, task_id = arguments.lookup("task", ("id",), route_value)
        task = None if task_id is None else self._world.poll_task(task_id, now)
        if task is None:
            raise SimulatedAPIError("task_not_found")
        return {"task": task_json(task, now)}

    def _get_interface(self, arguments: Arguments, route_value: str, _now: float) -> dict[str, Any]:
        _, interface_id = arguments.lookup(_INTERFACE, ("id",), route_value)
        interface = self._interface(interface_id)
        return {_INTERFACE: interface_json(interface, self._world)}

    def _list_vm_interfaces(
        self, arguments: Arguments, route_value: str, _now: float
    ) -> dict[str, Any]:
        world = self._world
        key, value = arguments.lookup("virtual_machine", ("id", "fqdn"), route_value)
        vm = _find({"id": world.virtual_machines, "fqdn": world.vms_by_fqdn}, key, value)
        if vm is None:
            raise SimulatedAPIError("virtual_machine_not_found")
        page, pagination = arguments.page(world.vm_interfaces[vm.id])
        interfaces = world.interfaces
        return {
            "pagination": pagination,
            "virtual_machine_network_interfaces": [
                interface_summary_json(interfaces[interface_id], world) for interface_id in page
            ],
        }

    def _organization(self, arguments: Arguments, route_value: str) -> Organization:
        """The organisation the request names; 404 if none, 403 unless it is active."""
        world = self._world
        key, value = arguments.lookup("organization", ("id", "sub_domain"), route_value)
        tables = {"id": world.organizations, "sub_domain": world.orgs_by_sub_domain}
        organization = _find(tables, key, value)
        if organization is None:
            raise SimulatedAPIError("organization_not_found")
        if organization.state != "active":
            raise SimulatedAPIError(f"organization_{organization.state}")
        return organization

    def _list_organization_vms(
        self, arguments: Arguments, route_value: str, _now: float
    ) -> dict[str, Any]:
        organization = self._organization(arguments, route_value)
        annotations = arguments.key_values("annotations")
        vms = [
            vm
            for vm in self._world.virtual_machines.values()
            if vm.organization_id == organization.id and vm.matches(annotations)
        ]
        page, pagination = arguments.page(vms)
        return {
            "pagination": pagination,
            "virtual_machines": [virtual_machine_json(vm) for vm in page],
        }

    def _list_speed_profiles(
        self, arguments: Arguments, route_value: str, _now: float
    ) -> dict[str, Any]:
        self._organization(arguments, route_value)
        page, pagination = arguments.page(list(self._world.speed_profiles.values()))
        return {
            "pagination": pagination,
            "network_speed_profiles": [profile_json(profile) for profile in page],
        }
