"""Walking the API's lists: every page of a list, and the interfaces of a selection of virtual
machines (:meth:`KatapultClient.select_interfaces <katapult_async.KatapultClient.select_interfaces>`).
No HTTP of its own: each request goes through the ``send`` it is given, the client's one choke
point (:meth:`HTTPTransport.request_with_meta <katapult_async._http.HTTPTransport.request_with_meta>`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import attrs

from katapult_async import _protocol as proto
from katapult_async import _requests as build
from katapult_async.models import NetworkInterface

__all__ = ["Decode", "Send", "check_selection", "pages", "select_interfaces"]

T = TypeVar("T")

Send = Callable[[build.APIRequest], Awaitable[tuple[Any, proto.ResponseMeta]]]
"""Sends one request, with retries, and returns its decoded JSON body and metadata."""

Decode = Callable[[Any, proto.ResponseMeta], tuple[list[T], int]]
"""Turns one page's body into its items and the total number of pages."""


async def pages(
    send: Send, request_for: Callable[[int], build.APIRequest], decode: Decode[T]
) -> AsyncIterator[list[T]]:
    """Each page's items in turn, the next page requested only when the caller wants it."""
    page, total = 1, 1
    while page <= total:
        data, meta = await send(request_for(page))
        batch, total = decode(data, meta)
        yield batch
        page += 1


def check_selection(
    organization: str | None,
    annotations: build.Annotations | None,
    virtual_machines: Iterable[str] | None,
) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """Check a selection before any request; return its annotation pairs and VM lookups.

    Raises:
        ValueError: when nothing is selected, ``annotations`` come without ``organization``, or
            a value is malformed.
        TypeError: when ``virtual_machines`` is a single string.
    """
    if organization is None and virtual_machines is None:
        raise ValueError("select interfaces by organization and/or virtual_machines")
    pairs = build.annotation_pairs(annotations)
    if pairs and organization is None:
        raise ValueError("annotations select VMs of an organization: give organization too")
    if organization is not None:
        build.organization_lookup(organization)
    vms: list[str] = []
    if virtual_machines is not None:
        if isinstance(virtual_machines, str):
            raise TypeError("virtual_machines must be an iterable of ids or FQDNs, not a str")
        for vm in virtual_machines:
            build.virtual_machine_lookup(vm)
            vms.append(vm)
    return pairs, vms


async def select_interfaces(
    send: Send,
    organization: str | None,
    annotations: tuple[tuple[str, str], ...],
    virtual_machines: list[str],
    per_page: int,
) -> AsyncGenerator[NetworkInterface, None]:
    """The interfaces of the organization's VMs that carry ``annotations``, then of the
    ``virtual_machines`` named, each VM and each interface once (checked by
    :func:`check_selection` first)."""
    seen_vms: set[str] = set()
    seen: set[str] = set()

    async def of_vm(vm: str, vm_id: str | None) -> AsyncIterator[NetworkInterface]:
        lookup = {"virtual_machine_id": vm_id, "fqdn": None} if vm_id else {"fqdn": vm}
        interface_pages = pages(
            send,
            lambda page: build.list_interfaces_request(
                virtual_machine_id=lookup.get("virtual_machine_id"),
                fqdn=lookup.get("fqdn"),
                page=page,
                per_page=per_page,
            ),
            proto.decode_interfaces,
        )
        async for batch in interface_pages:
            for iface in batch:
                if iface.id in seen:
                    continue
                seen.add(iface.id)
                if iface.virtual_machine_id is None and vm_id is not None:
                    iface = attrs.evolve(iface, virtual_machine_id=vm_id)
                yield iface

    if organization is not None:
        vm_pages = pages(
            send,
            lambda page: build.list_virtual_machines_request(
                organization, annotations=annotations, page=page, per_page=per_page
            ),
            proto.decode_virtual_machines,
        )
        async for vm_batch in vm_pages:
            for machine in vm_batch:
                if machine.id in seen_vms:
                    continue
                seen_vms.add(machine.id)
                if machine.fqdn:
                    seen_vms.add(machine.fqdn)
                async for iface in of_vm(machine.id, machine.id):
                    yield iface
    for vm in virtual_machines:
        if vm in seen_vms:
            continue
        seen_vms.add(vm)
        is_id = vm.startswith(build.VIRTUAL_MACHINE_ID_PREFIX)
        async for iface in of_vm(vm, vm if is_id else None):
            yield iface
