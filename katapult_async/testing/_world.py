"""The simulated account: organisation, speed profiles, VMs, interfaces and tasks.

Pure state with no I/O. Tasks are never advanced by timers: their status follows from their
timestamps whenever it is read, and the one state change a task causes later (a failed or
``no_change`` task reverting its interface) is applied by :meth:`World.settle`, which the simulator calls before
every read of interfaces. Pending reverts sit in a heap ordered by finish time, so settling costs
nothing when nothing is due.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Mapping

import attrs

from ._config import SimulatorConfig
from ._ids import opaque_id
from ._model import (
    Network,
    Organization,
    SimulatedInterface,
    SimulatedSpeedProfile,
    SimulatedTask,
    TaskOutcome,
    VirtualMachine,
)

# Ids of the live account in the recorded interactions where one is known, so fixtures match.
_PROFILES = (
    SimulatedSpeedProfile(opaque_id("nsp_", 10), "10Mbps", "10mbps", 10, 10),
    SimulatedSpeedProfile("nsp_m2yvaph9SoMFbupJ", "100Mbps", "100mbps", 100, 100),
    SimulatedSpeedProfile("nsp_OJRYLIcdw01g7apm", "500Mbps", "500mbps", 500, 500),
    SimulatedSpeedProfile("nsp_Y8YS65yTivlCAjIY", "1Gbps", "1gbps", 1000, 1000),
    SimulatedSpeedProfile("nsp_FKZSFo5xhn9Pfr79", "10Gbps", "10gbps", 10000, 10000),
    SimulatedSpeedProfile("nsp_81Ah8cbAbaA9zGzX", "Unrestricted", "unrestricted", None, None),
)
_PUBLIC_NETWORK = Network("netw_gVRkZdSKczfNg34P", "Public Network")
_PRIVATE_NETWORK = Network(opaque_id("netw_", 2), "Private Network")
_PUT_BACK = (TaskOutcome.FAILED, TaskOutcome.NO_CHANGE)
"""Task outcomes that put the interface's previous profile back when the task ends."""


class World:
    """Everything the simulated API can read or change."""

    def __init__(self, config: SimulatorConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        sub_domain = config.organization_sub_domain
        self.organizations: dict[str, Organization] = {}
        self.orgs_by_sub_domain: dict[str, Organization] = {}
        self.organization = self.add_organization(f"{sub_domain.capitalize()} Ltd", sub_domain)
        self.speed_profiles: dict[str, SimulatedSpeedProfile] = {p.id: p for p in _PROFILES}
        self.profiles_by_permalink: dict[str, SimulatedSpeedProfile] = {
            p.permalink: p for p in _PROFILES
        }
        self.networks: dict[str, Network] = {n.id: n for n in (_PUBLIC_NETWORK, _PRIVATE_NETWORK)}
        self.virtual_machines: dict[str, VirtualMachine] = {}
        self.vms_by_fqdn: dict[str, VirtualMachine] = {}
        self.interfaces: dict[str, SimulatedInterface] = {}
        self.vm_interfaces: dict[str, list[str]] = {}
        self.tasks: dict[str, SimulatedTask] = {}
        # interface id -> the task whose assignment currently stands on it.
        self._assigned_by: dict[str, str] = {}
        # (finishes_at, sequence, task id) of failed tasks whose revert is not applied yet.
        self._due: list[tuple[float, int, str]] = []
        self.latest_finish: float | None = None
        self._fail_profiles = frozenset(self._profile_id(name) for name in config.fail_profiles)
        self._vm_count = 0
        self._interface_count = 0
        self._task_count = 0

        self.default_vm = self.add_virtual_machine("sim-vm-1")
        for name, public_profile in (("sim-web-1", "10gbps"), ("sim-db-1", "1gbps")):
            vm = self.add_virtual_machine(name)
            self.add_interfaces(1, speed_profile=public_profile, vm_id=vm.id)
            self.add_interfaces(
                1, speed_profile="unrestricted", vm_id=vm.id, network_id=_PRIVATE_NETWORK.id
            )

    def add_organization(
        self, name: str, sub_domain: str, *, state: str = "active"
    ) -> Organization:
        """Create an organisation (no VMs) and return it."""
        if sub_domain in self.orgs_by_sub_domain:
            raise ValueError(f"an organization with sub-domain {sub_domain!r} exists already")
        organization = Organization(
            opaque_id("org_", len(self.organizations) + 1), name, sub_domain, state
        )
        self.organizations[organization.id] = organization
        self.orgs_by_sub_domain[sub_domain] = organization
        return organization

    def add_virtual_machine(
        self,
        name: str | None = None,
        *,
        fqdn: str | None = None,
        annotations: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        organization_id: str | None = None,
    ) -> VirtualMachine:
        """Create a VM with no interfaces and return it."""
        organization = (
            self.organization if organization_id is None else self.organizations[organization_id]
        )
        pairs = tuple(
            (str(key), str(value))
            for key, value in (
                annotations.items() if isinstance(annotations, Mapping) else annotations or ()
            )
        )
        self._vm_count += 1
        name = name or f"sim-vm-{self._vm_count}"
        fqdn = fqdn or f"{name}.{organization.sub_domain}.kpult.com"
        if fqdn in self.vms_by_fqdn:
            raise ValueError(f"a virtual machine with FQDN {fqdn!r} exists already")
        vm = VirtualMachine(
            opaque_id("vm_", self._vm_count),
            name,
            name,
            fqdn,
            organization.id,
            pairs,
            1_700_000_000 + self._vm_count,
        )
        self.virtual_machines[vm.id] = vm
        self.vms_by_fqdn[vm.fqdn] = vm
        self.vm_interfaces[vm.id] = []
        return vm

    def _profile_id(self, name: str) -> str:
        try:
            return self.profile(name).id
        except KeyError:
            raise ValueError(f"fail_profiles: no speed profile {name!r}") from None

    def profile(self, id_or_permalink: str) -> SimulatedSpeedProfile:
        """Return the profile with this id or permalink; raise KeyError if there is none."""
        profile = self.speed_profiles.get(id_or_permalink)
        if profile is None:
            profile = self.profiles_by_permalink.get(id_or_permalink)
        if profile is None:
            raise KeyError(f"no speed profile {id_or_permalink!r}")
        return profile

    def add_interfaces(
        self,
        count: int,
        *,
        speed_profile: str = "10gbps",
        vm_id: str | None = None,
        network_id: str | None = None,
    ) -> list[str]:
        """Attach ``count`` new interfaces to a VM and return their ids, in order."""
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        profile_id = self.profile(speed_profile).id
        vm = self.default_vm if vm_id is None else self.virtual_machines[vm_id]
        network = _PUBLIC_NETWORK if network_id is None else self.networks[network_id]
        name = f"{network.name} on {vm.name}"
        first = self._interface_count + 1
        self._interface_count += count
        ids = [opaque_id("vmnet_", number) for number in range(first, first + count)]
        interfaces = self.interfaces
        for number, interface_id in enumerate(ids, first):
            interfaces[interface_id] = SimulatedInterface(
                interface_id, number, name, vm.id, network.id, profile_id
            )
        self.vm_interfaces[vm.id].extend(ids)
        return ids

    def create_task(
        self, interface: SimulatedInterface, profile: SimulatedSpeedProfile, now: float, wall: float
    ) -> SimulatedTask:
        """Accept a speed-profile change: assign the profile now and return its task."""
        config = self._config
        rng = self._rng
        duration = config.task_duration
        if config.task_duration_jitter:
            jitter = config.task_duration_jitter
            duration *= 1.0 + rng.uniform(-jitter, jitter)
        start_delay = config.task_start_delay
        start_delay = duration * 0.25 if start_delay is None else min(start_delay, duration)
        outcome = TaskOutcome.COMPLETED
        never_rate, failure_rate = config.task_never_finish_rate, config.task_failure_rate
        no_change_rate = config.task_no_change_rate
        if never_rate or failure_rate or no_change_rate:
            draw = rng.random()
            if draw < never_rate:
                outcome = TaskOutcome.NEVER_FINISHES
            elif draw < never_rate + failure_rate:
                outcome = TaskOutcome.FAILED
            elif draw < never_rate + failure_rate + no_change_rate:
                outcome = TaskOutcome.NO_CHANGE
        if profile.id in self._fail_profiles:
            outcome = TaskOutcome.FAILED
        task_polls = config.task_polls
        if task_polls is not None:
            # counted by reads, not time: running from the start until the task_polls-th read
            duration = start_delay = 0.0
        self._task_count += 1
        task = SimulatedTask(
            id=opaque_id("task_", self._task_count),
            interface_id=interface.id,
            speed_profile_id=profile.id,
            previous_speed_profile_id=interface.speed_profile_id,
            outcome=outcome,
            created=now,
            created_wall=wall,
            starts_at=now + start_delay,
            duration=duration,
            finish_on_poll=task_polls,
            progress_mode=config.task_progress,
        )
        self.tasks[task.id] = task
        self.interfaces[interface.id] = attrs.evolve(interface, speed_profile_id=profile.id)
        self._assigned_by[interface.id] = task.id
        finishes_at = task.finishes_at
        if finishes_at is not None:
            if self.latest_finish is None or finishes_at > self.latest_finish:
                self.latest_finish = finishes_at
            if outcome in _PUT_BACK:
                heapq.heappush(self._due, (finishes_at, self._task_count, task.id))
        return task

    def poll_task(self, task_id: str, now: float) -> SimulatedTask | None:
        """Return the task with this id as a read at clock time ``now`` sees it, or None.

        With ``task_polls``, the read is counted, and the ``task_polls``-th read ends the task
        at ``now`` (its revert, if it failed, is applied at once).
        """
        task = self.tasks.get(task_id)
        if task is None or task.finish_on_poll is None:
            return task
        polls = task.polls + 1
        if polls < task.finish_on_poll or task.outcome is TaskOutcome.NEVER_FINISHES:
            task = self.tasks[task_id] = attrs.evolve(task, polls=polls)
            return task
        duration = now - task.created
        while task.created + duration > now:  # so that the task has ended at ``now`` exactly
            duration = math.nextafter(duration, -math.inf)
        task = self.tasks[task_id] = attrs.evolve(
            task, polls=polls, finish_on_poll=None, duration=duration
        )
        if self.latest_finish is None or now > self.latest_finish:
            self.latest_finish = now
        if task.outcome in _PUT_BACK:
            heapq.heappush(self._due, (now, self._task_count, task.id))
            self.settle(now)
        return task

    def settle(self, now: float) -> None:
        """Apply the reverts of tasks that failed, or changed nothing, by clock time ``now``.

        Such a task restores the interface's previous profile only if its assignment still
        stands, that is no later update was accepted for the interface in the meantime.
        """
        due = self._due
        while due and due[0][0] <= now:
            _, _, task_id = heapq.heappop(due)
            task = self.tasks[task_id]
            if self._assigned_by.get(task.interface_id) == task_id:
                del self._assigned_by[task.interface_id]
                interface = self.interfaces[task.interface_id]
                self.interfaces[interface.id] = attrs.evolve(
                    interface, speed_profile_id=task.previous_speed_profile_id
                )
