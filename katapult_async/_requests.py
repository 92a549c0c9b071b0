"""Pure request building. No I/O, no aiohttp.

The client's endpoint methods describe each call as an :class:`APIRequest` built here: the path as
the spec names it, the bracketed lookups, the JSON body, and the rate limiter's priority. Every
builder validates its arguments first, so a malformed id or permalink raises ``ValueError`` before
anything is sent. :mod:`katapult_async._protocol` decodes what comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from katapult_async._budget import PRIORITY_POLL
from katapult_async._validate import validate_identifier
from katapult_async.models import NetworkInterfaceRef, SpeedProfileRef

UPDATE_SPEED_PROFILE_PATH = (
    "/virtual_machine_network_interfaces/virtual_machine_network_interface/update_speed_profile"
)
TASK_PATH = "/tasks/task"
INTERFACE_PATH = "/virtual_machine_network_interfaces/virtual_machine_network_interface"
VM_INTERFACES_PATH = "/virtual_machines/virtual_machine/network_interfaces"
ORG_SPEED_PROFILES_PATH = "/organizations/organization/network_speed_profiles"
ORG_VIRTUAL_MACHINES_PATH = "/organizations/organization/virtual_machines"

ORGANIZATION_ID_PREFIX = "org_"
VIRTUAL_MACHINE_ID_PREFIX = "vm_"

Annotations = Mapping[str, str] | Iterable[tuple[str, str]]
"""VM annotations to match: a mapping or ``(key, value)`` pairs (a VM must match all of them)."""

DEFAULT_PER_PAGE = 100


@attrs.frozen
class APIRequest:
    """One API call, before it is sent.

    Attributes:
        method: ``"GET"`` or ``"PATCH"``.
        path: The path below the base URL (literal segments, as in the spec).
        params: Query parameters (bracketed lookups such as ``task[id]``): a mapping, or
            ``(name, value)`` pairs where a name repeats (``annotations[][key]``).
        body: The JSON body, for PATCH.
        kind: A short label for logs and metrics (``"update_speed_profile"``, ``"get_task"``).
        priority: Its place in the rate limiter's queue: 0, or ``PRIORITY_POLL`` for task polls,
            which wait behind the others while the budget binds.
    """

    method: str
    path: str
    params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None
    body: Mapping[str, Any] | None = None
    kind: str = ""
    priority: int = 0

    @property
    def idempotent(self) -> bool:
        """GETs are always safe to send again."""
        return self.method == "GET"


_PROFILE_REFS: dict[str, SpeedProfileRef] = {}
_PROFILE_REFS_MAX = 64


def _speed_profile_ref(value: str | SpeedProfileRef) -> SpeedProfileRef:
    """``SpeedProfileRef.parse``, remembering the refs of a few strings: a bulk job sends one
    profile to thousands of interfaces, and refs are immutable."""
    if not isinstance(value, str):
        return SpeedProfileRef.parse(value)
    ref = _PROFILE_REFS.get(value)
    if ref is None:
        ref = SpeedProfileRef.parse(value)  # raises for a malformed value, which is not kept
        if len(_PROFILE_REFS) < _PROFILE_REFS_MAX:
            _PROFILE_REFS[value] = ref
    return ref


def _interface_id(value: str | NetworkInterfaceRef) -> str:
    """``NetworkInterfaceRef.parse(value).id``, without making a ref for a plain id string: the
    builders need only the id. The check and its error are the ref's (its ``id`` validator)."""
    if type(value) is str:
        return validate_identifier(value, what="id")
    return NetworkInterfaceRef.parse(value).id


def update_speed_profile_request(
    interface: str | NetworkInterfaceRef, speed_profile: str | SpeedProfileRef
) -> APIRequest:
    """The PATCH that assigns ``speed_profile`` to ``interface``.

    Raises:
        ValueError, TypeError: for a malformed id or permalink (before anything is sent).
    """
    iface_id = _interface_id(interface)
    profile = _speed_profile_ref(speed_profile)
    return APIRequest(
        "PATCH",
        UPDATE_SPEED_PROFILE_PATH,
        body={
            "virtual_machine_network_interface": {"id": iface_id},
            "speed_profile": profile.as_lookup(),
        },
        kind="update_speed_profile",
    )


def get_task_request(task_id: str) -> APIRequest:
    """The GET of one task by id."""
    validate_identifier(task_id, what="task id")
    return APIRequest(
        "GET", TASK_PATH, params={"task[id]": task_id}, kind="get_task", priority=PRIORITY_POLL
    )


def get_interface_request(interface: str | NetworkInterfaceRef) -> APIRequest:
    """The GET of one network interface by id."""
    return APIRequest(
        "GET",
        INTERFACE_PATH,
        params={"virtual_machine_network_interface[id]": _interface_id(interface)},
        kind="get_network_interface",
    )


def _one_lookup(prefix: str, **lookups: str | None) -> dict[str, str]:
    given = {k: v for k, v in lookups.items() if v is not None}
    if len(given) != 1:
        names = " or ".join(lookups)
        raise ValueError(f"give exactly one of {names}")
    ((key, value),) = given.items()
    validate_identifier(value, what=key)
    return {f"{prefix}[{key}]": value}


def list_interfaces_request(
    *, virtual_machine_id: str | None, fqdn: str | None, page: int, per_page: int
) -> APIRequest:
    """One page of a virtual machine's network interfaces (by VM id or FQDN)."""
    params = _one_lookup("virtual_machine", id=virtual_machine_id, fqdn=fqdn)
    params.update(page=str(page), per_page=str(per_page))
    return APIRequest("GET", VM_INTERFACES_PATH, params=params, kind="list_network_interfaces")


def list_speed_profiles_request(
    *, organization_id: str | None, sub_domain: str | None, page: int, per_page: int
) -> APIRequest:
    """One page of an organisation's network speed profiles (by org id or sub-domain)."""
    params = _one_lookup("organization", id=organization_id, sub_domain=sub_domain)
    params.update(page=str(page), per_page=str(per_page))
    return APIRequest("GET", ORG_SPEED_PROFILES_PATH, params=params, kind="list_speed_profiles")


def organization_lookup(organization: str) -> dict[str, str]:
    """The lookup of an organization given one way everywhere: ``org_...`` is an id, anything
    else a sub-domain (``{"organization[id]": ...}`` or ``{"organization[sub_domain]": ...}``).

    Raises:
        ValueError: for a malformed value.
    """
    validate_identifier(organization, what="organization")
    key = "id" if organization.startswith(ORGANIZATION_ID_PREFIX) else "sub_domain"
    return {f"organization[{key}]": organization}


def virtual_machine_lookup(virtual_machine: str) -> dict[str, str]:
    """The lookup of a VM: ``vm_...`` is an id, anything else an FQDN.

    Raises:
        ValueError: for a malformed value.
    """
    validate_identifier(virtual_machine, what="virtual machine")
    key = "id" if virtual_machine.startswith(VIRTUAL_MACHINE_ID_PREFIX) else "fqdn"
    return {f"virtual_machine[{key}]": virtual_machine}


def annotation_pairs(annotations: Annotations | None) -> tuple[tuple[str, str], ...]:
    """Check annotations to filter by and return them as ``(key, value)`` pairs.

    Raises:
        ValueError: for an empty key, or a key or value that is not a printable string.
    """
    if annotations is None:
        return ()
    items = annotations.items() if isinstance(annotations, Mapping) else annotations
    pairs = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            raise ValueError(f"an annotation must be a (key, value) pair, got {item!r}")
        key, value = item
        if not isinstance(key, str) or not key or not key.isprintable():
            raise ValueError(f"an annotation key must be a non-empty string, got {key!r}")
        if not isinstance(value, str) or not value.isprintable():
            raise ValueError(f"annotation {key!r}: the value must be a printable string")
        pairs.append((key, value))
    return tuple(pairs)


def list_virtual_machines_request(
    organization: str,
    *,
    annotations: Sequence[tuple[str, str]] = (),
    page: int,
    per_page: int,
) -> APIRequest:
    """One page of an organization's VMs, filtered by annotations (a VM must match all).

    The annotations travel as the parallel arrays ``annotations[][key]`` and
    ``annotations[][value]``, one pair after the other.
    """
    params = list(organization_lookup(organization).items())
    for key, value in annotations:
        params.append(("annotations[][key]", key))
        params.append(("annotations[][value]", value))
    params += [("page", str(page)), ("per_page", str(per_page))]
    return APIRequest("GET", ORG_VIRTUAL_MACHINES_PATH, params=params, kind="list_virtual_machines")
