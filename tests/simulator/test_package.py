"""The package surface and the options: ``__all__``, the config, ids, the lifecycle."""

from __future__ import annotations

import inspect
import re
import time
from typing import Any

import attrs
import pytest

import katapult_async.testing as testing
from katapult_async.testing import KatapultSimulator, SimulatorConfig
from katapult_async.testing._ids import opaque_id

from .helpers import profile_id


def test_all_lists_the_public_names_sorted() -> None:
    # pytest's assertion rewriting adds "@py_builtins" to modules of a package that ships a pytest
    # plugin, and importing the plugin binds the submodule: neither is a re-export
    public = {name for name in dir(testing) if name.isidentifier() and not name.startswith("_")}
    public.discard("pytest_plugin")
    assert sorted(testing.__all__) == testing.__all__
    assert set(testing.__all__) == public


@pytest.mark.parametrize(
    ("old", "new"),
    [("TaskStatus", "SimulatedTaskStatus"), ("SpeedProfile", "SimulatedSpeedProfile")],
)
def test_old_names_still_import_with_a_deprecation_warning(old: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; use {new}"):
        value = getattr(testing, old)
    assert value is getattr(testing, new)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = testing.Nothing


def test_constructor_takes_every_config_field_as_a_keyword() -> None:
    parameters = inspect.signature(KatapultSimulator).parameters
    assert list(parameters) == [field.name for field in attrs.fields(SimulatorConfig)]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    sim = KatapultSimulator(rate_limit=100, rate_limit_window=2, task_duration=0.2)
    assert sim.config == SimulatorConfig(rate_limit=100, rate_limit_window=2, task_duration=0.2)
    with pytest.raises(TypeError):
        KatapultSimulator(rate_limt=100)  # type: ignore[call-arg]


def test_constructor_defaults_match_the_config() -> None:
    assert KatapultSimulator().config == SimulatorConfig()
    config = SimulatorConfig(rate_limit=5, seed=3)
    assert KatapultSimulator.from_config(config).config is config


def test_refuses_non_loopback_hosts_unless_allowed() -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        KatapultSimulator(host="0.0.0.0")
    assert KatapultSimulator(host="0.0.0.0", allow_non_loopback=True).config.host == "0.0.0.0"
    assert KatapultSimulator(host="::1").config.host == "::1"


@pytest.mark.parametrize(
    "options",
    [
        {"task_failure_rate": 1.5},
        {"task_failure_rate": 0.6, "task_never_finish_rate": 0.6},
        {"rate_limit": 0},
        {"rate_limit_window": 0},
        {"rate_limit_mode": "leaky"},
        {"task_duration": -1},
    ],
)
def test_rejects_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(**options)


def test_generated_ids_look_live_and_are_unique() -> None:
    ids = {opaque_id("vmnet_", n) for n in range(20_000)}
    assert len(ids) == 20_000
    assert all(re.fullmatch(r"vmnet_[0-9A-Za-z]{16}", i) for i in ids)


def test_add_interfaces_is_fast_and_ordered() -> None:
    sim = KatapultSimulator()
    started = time.perf_counter()
    ids = sim.add_interfaces(100_000, speed_profile="1gbps")
    assert time.perf_counter() - started < 3.0  # about 0.3 s; slack for busy CI machines
    assert len(set(ids)) == 100_000
    interface = sim.interfaces[ids[-1]]
    assert interface.speed_profile_id == profile_id(sim, "1gbps")
    assert interface.virtual_machine_id == sim.default_virtual_machine.id
    with pytest.raises(KeyError):
        sim.add_interfaces(1, speed_profile="nope")


async def test_base_url_token_and_lifecycle() -> None:
    sim = KatapultSimulator(token="secret-token")
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    await sim.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/core/v1", sim.base_url)
        assert sim.token == "secret-token"
        assert sim.auth_headers == {"Authorization": "Bearer secret-token"}
    finally:
        await sim.close()
        await sim.close()
