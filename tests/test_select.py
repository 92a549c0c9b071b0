"""Selecting interfaces by organization, annotations and VM, against the simulator on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from katapult_async import (
    KatapultClient,
    NetworkInterfaceRef,
    ObjectInTrashError,
    OrganizationNotActivatedError,
    OrganizationNotFoundError,
    OrganizationSuspendedError,
    Outcome,
    VirtualMachine,
    VirtualMachineNotFoundError,
)
from katapult_async import _protocol as proto
from katapult_async import _requests as build
from katapult_async.errors import error_from_response
from katapult_async.testing import KatapultSimulator

VMS_PATH = "/core/v1" + build.ORG_VIRTUAL_MACHINES_PATH
IFACES_PATH = "/core/v1" + build.VM_INTERFACES_PATH


@pytest.fixture
async def sim() -> AsyncIterator[KatapultSimulator]:
    async with KatapultSimulator(rate_limit=1000, task_duration=0.05) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: KatapultSimulator) -> AsyncIterator[KatapultClient]:
    async with KatapultClient(sim.token, base_url=sim.base_url) as c:
        yield c


def _fleet(sim: KatapultSimulator) -> dict[str, list[str]]:
    """Five VMs in acme with annotations, two interfaces each; returns ids by VM name."""
    spec = {
        "db-1": {"role": "db", "env": "prod"},
        "db-2": {"role": "db", "env": "staging"},
        "db-3": {"role": "db", "env": "prod"},
        "web-1": {"role": "web", "env": "prod"},
        "bare-1": {},
    }
    out = {}
    for name, pairs in spec.items():
        vm = sim.add_virtual_machine(name, annotations=pairs)
        out[name] = sim.add_interfaces(2, vm_id=vm.id)
    return out


def _gets(sim: KatapultSimulator, path: str) -> int:
    return sum(1 for r in sim.requests if r.method == "GET" and r.path == path)


async def test_list_virtual_machines_walks_pages_and_filters_with_and(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    _fleet(sim)
    vms = await client.list_virtual_machines("acme", per_page=2)
    # 3 VMs of the simulator's own plus 5
    assert len(vms) == 8
    assert all(isinstance(vm, VirtualMachine) for vm in vms)
    assert _gets(sim, VMS_PATH) == 4
    db_prod = await client.list_virtual_machines(
        sim.organization.id, annotations={"role": "db", "env": "prod"}, per_page=1
    )
    assert [vm.name for vm in db_prod] == ["db-1", "db-3"]
    assert db_prod[0].fqdn == "db-1.acme.kpult.com"
    assert db_prod[0].created_at is not None
    assert await client.list_virtual_machines("acme", annotations=[("role", "cache")]) == []


async def test_select_interfaces_across_pages_each_once(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    fleet = _fleet(sim)
    web_1 = next(vm.id for vm in sim.virtual_machines.values() if vm.name == "web-1")
    selected = [
        iface
        async for iface in client.select_interfaces(
            organization="acme",
            annotations={"role": "db"},
            virtual_machines=["db-1.acme.kpult.com", web_1],
            per_page=1,
        )
    ]
    expected = fleet["db-1"] + fleet["db-2"] + fleet["db-3"] + fleet["web-1"]
    assert [iface.id for iface in selected] == expected
    assert len({iface.id for iface in selected}) == len(selected)
    by_vm = {iface.id: iface.virtual_machine_id for iface in selected}
    assert by_vm[fleet["web-1"][0]] == web_1
    assert all(vm_id is not None for vm_id in by_vm.values())
    # several pages of VMs and of interfaces (one item a page)
    assert _gets(sim, VMS_PATH) >= 3
    assert _gets(sim, IFACES_PATH) >= 8


async def test_select_is_lazy_a_page_at_a_time(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    _fleet(sim)
    sim.clear_requests()
    selection = client.select_interfaces(
        organization="acme", annotations={"role": "db"}, per_page=1
    )
    async with contextlib.aclosing(selection):
        first = await selection.__anext__()
    assert first.id
    # one page of VMs and one page of the first VM's interfaces
    assert len(sim.requests) == 2


async def test_select_feeds_a_bulk_update_directly(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    fleet = _fleet(sim)
    selection = client.select_interfaces(organization="acme", annotations={"env": "prod"})
    pairs = ((iface, "1gbps") async for iface in selection)
    results = [r async for r in client.bulk_update_speed_profiles(pairs)]
    assert sorted(r.interface_id for r in results) == sorted(
        fleet["db-1"] + fleet["db-3"] + fleet["web-1"]
    )
    assert {r.outcome for r in results} == {Outcome.COMPLETED}


async def test_unknown_organization_and_vm(sim: KatapultSimulator, client: KatapultClient) -> None:
    with pytest.raises(OrganizationNotFoundError) as info:
        await client.list_virtual_machines("nosuch")
    assert info.value.status == 404
    with pytest.raises(OrganizationNotFoundError):
        [i async for i in client.select_interfaces(organization="org_doesNotExist00")]
    with pytest.raises(VirtualMachineNotFoundError):
        [i async for i in client.select_interfaces(virtual_machines=["nope.example.com"])]
    with pytest.raises(VirtualMachineNotFoundError):
        [i async for i in client.select_interfaces(virtual_machines=["vm_doesNotExist0000"])]


@pytest.mark.parametrize("envelope", ["wrapped", "flat"])
async def test_suspended_and_not_activated_organizations(envelope: str) -> None:
    async with KatapultSimulator(error_envelope=envelope) as sim:
        sim.add_organization("Gone Ltd", "gone", state="suspended")
        new = sim.add_organization("New Ltd", "new", state="not_activated")
        async with KatapultClient(sim.token, base_url=sim.base_url) as client:
            with pytest.raises(OrganizationSuspendedError) as suspended:
                await client.list_virtual_machines("gone")
            assert suspended.value.status == 403
            with pytest.raises(OrganizationNotActivatedError):
                await client.list_virtual_machines(new.id)
            with pytest.raises(OrganizationSuspendedError):
                await client.list_speed_profiles(sub_domain="gone")


async def test_other_organizations_vms_are_not_selected(
    sim: KatapultSimulator, client: KatapultClient
) -> None:
    other = sim.add_organization("Other Ltd", "other")
    vm = sim.add_virtual_machine("x-1", annotations={"role": "db"}, organization_id=other.id)
    ids = sim.add_interfaces(1, vm_id=vm.id)
    acme = [
        i.id
        async for i in client.select_interfaces(organization="acme", annotations={"role": "db"})
    ]
    assert not set(ids) & set(acme)
    assert [i.id async for i in client.select_interfaces(organization="other")] == ids


def test_selection_arguments_are_checked_before_any_request() -> None:
    client = KatapultClient("ksim_" + "x" * 32, base_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="organization"):
        client.select_interfaces()
    with pytest.raises(ValueError, match="give organization"):
        client.select_interfaces(annotations={"role": "db"}, virtual_machines=["vm_x"])
    with pytest.raises(ValueError, match="key"):
        client.select_interfaces(organization="acme", annotations={"": "db"})
    with pytest.raises(TypeError):
        client.select_interfaces(virtual_machines="vm_abc")
    with pytest.raises(ValueError):
        client.select_interfaces(virtual_machines=["has space"])


def test_list_virtual_machines_request_sends_parallel_annotation_arrays() -> None:
    request = build.list_virtual_machines_request(
        "acme", annotations=(("role", "db"), ("env", "prod")), page=2, per_page=5
    )
    assert request.params == [
        ("organization[sub_domain]", "acme"),
        ("annotations[][key]", "role"),
        ("annotations[][value]", "db"),
        ("annotations[][key]", "env"),
        ("annotations[][value]", "prod"),
        ("page", "2"),
        ("per_page", "5"),
    ]
    assert build.organization_lookup("org_abc") == {"organization[id]": "org_abc"}
    assert build.virtual_machine_lookup("web.example.com") == {
        "virtual_machine[fqdn]": "web.example.com"
    }


def test_decode_virtual_machines_ignores_unknown_fields() -> None:
    body = {
        "pagination": {"current_page": 1, "total_pages": 3, "total": 7, "per_page": 3},
        "virtual_machines": [
            {"id": "vm_a", "name": "a", "hostname": "a", "fqdn": "a.x", "created_at": 0, "zone": {}}
        ],
    }
    vms, total = proto.decode_virtual_machines(body)
    assert total == 3
    assert vms[0].id == "vm_a"
    assert vms[0].created_at is not None
    assert vms[0].fqdn == "a.x"
    large = {
        "pagination": {"current_page": 2, "total_pages": None, "per_page": 1, "large_set": True},
        "virtual_machines": [{"id": "vm_b"}],
    }
    assert proto.decode_virtual_machines(large)[1] == 3


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("organization_not_found", 404, OrganizationNotFoundError),
        ("organization_suspended", 403, OrganizationSuspendedError),
        ("organization_not_activated", 403, OrganizationNotActivatedError),
        ("virtual_machine_not_found", 404, VirtualMachineNotFoundError),
        ("object_in_trash", 406, ObjectInTrashError),
    ],
)
@pytest.mark.parametrize("wrapped", [True, False])
def test_new_error_codes_in_both_envelopes(
    code: str, status: int, cls: type[Exception], wrapped: bool
) -> None:
    payload = {"code": code, "description": "d", "detail": {"trash_object": {"id": "x"}}}
    error = error_from_response(status, {"error": payload} if wrapped else payload)
    assert type(error) is cls
    if isinstance(error, ObjectInTrashError):
        assert error.trash_object == {"id": "x"}


def test_a_network_interface_is_an_interface_ref() -> None:
    from katapult_async import NetworkInterface

    assert NetworkInterfaceRef.parse(NetworkInterface(id="vmnet_abc")) == NetworkInterfaceRef(
        "vmnet_abc"
    )
