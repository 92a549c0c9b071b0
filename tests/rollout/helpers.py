"""Helpers of the rollout tests: what the simulator holds and saw."""

from __future__ import annotations

from katapult_async.testing import KatapultSimulator

PATCH_PATH = "update_speed_profile"


def profile_of(sim: KatapultSimulator, interface_id: str) -> str:
    """The permalink of the profile an interface has in the simulator now."""
    sim.settle()
    profile_id = sim.interfaces[interface_id].speed_profile_id
    return sim.speed_profiles[profile_id].permalink


def patched(sim: KatapultSimulator) -> list[str]:
    """The interfaces PATCHed, in the order the simulator received the PATCHes."""
    return [
        request.body["virtual_machine_network_interface"]["id"]
        for request in sim.requests
        if request.method == "PATCH" and PATCH_PATH in request.path
    ]


def rate_limited(sim: KatapultSimulator) -> int:
    return sim.stats.rate_limited
