"""``client.plan_speed_profiles``: one plan item per input item, in order, nothing changed."""

from __future__ import annotations

import pytest

from katapult_async import (
    DuplicateItemError,
    KatapultClient,
    NetworkInterfaceNotFoundError,
    PlanAction,
    PlanItem,
    SpeedProfileRef,
)
from katapult_async.testing import KatapultSimulator
from tests.rollout.helpers import patched


async def plan(client: KatapultClient, *args: object, **kwargs: object) -> list[PlanItem]:
    return [item async for item in client.plan_speed_profiles(*args, **kwargs)]  # type: ignore[arg-type]


@pytest.mark.katapult(interfaces=4, rate_limit=20, rate_limit_window=1)
async def test_plan_reads_each_interface_and_changes_nothing(
    katapult_simulator: KatapultSimulator,
    katapult_client: KatapultClient,
    katapult_interfaces: list[str],
) -> None:
    first, second, third, fourth = katapult_interfaces
    await katapult_client.update_speed_profile(second, "1gbps", wait=True)
    katapult_simulator.clear_requests()

    items = await plan(
        katapult_client,
        [first, second, (third, "500mbps"), "not an id", first, "vmnet_missing0000001"],
        "1gbps",
        concurrency=2,
    )

    assert [item.index for item in items] == list(range(6))
    assert [item.action for item in items] == [
        PlanAction.CHANGE,
        PlanAction.UNCHANGED,
        PlanAction.CHANGE,
        PlanAction.ERROR,
        PlanAction.ERROR,
        PlanAction.ERROR,
    ]
    assert items[0].current_speed_profile is not None
    assert items[0].current_speed_profile.permalink == "10gbps"
    assert items[0].speed_profile == SpeedProfileRef(permalink="1gbps")
    assert items[0].virtual_machine
    assert items[2].speed_profile == SpeedProfileRef(permalink="500mbps")
    assert isinstance(items[3].error, ValueError)
    assert isinstance(items[4].error, DuplicateItemError)
    assert items[4].error.first_index == 0
    assert isinstance(items[5].error, NetworkInterfaceNotFoundError)
    assert fourth not in {item.interface_id for item in items}
    assert not patched(katapult_simulator)
    assert katapult_simulator.stats.rate_limited == 0


@pytest.mark.katapult(interfaces=3)
async def test_plan_takes_a_selection_as_it_comes(
    katapult_simulator: KatapultSimulator, katapult_client: KatapultClient
) -> None:
    vm = katapult_simulator.add_virtual_machine(annotations={"role": "db"})
    ids = katapult_simulator.add_interfaces(2, vm_id=vm.id, speed_profile="1gbps")
    selection = katapult_client.select_interfaces(organization="acme", annotations={"role": "db"})
    items = await plan(katapult_client, selection, "1gbps")
    assert [(item.interface_id, item.action) for item in items] == [
        (ids[0], PlanAction.UNCHANGED),
        (ids[1], PlanAction.UNCHANGED),
    ]


async def test_plan_checks_its_options_at_once(katapult_client: KatapultClient) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        katapult_client.plan_speed_profiles([], "1gbps", concurrency=0)
    with pytest.raises(ValueError):
        katapult_client.plan_speed_profiles([], "not a profile!")
    items = await plan(katapult_client, ["vmnet_abc"])  # a bare interface needs a target
    assert items[0].action is PlanAction.ERROR
    assert "no target" in str(items[0].error)
