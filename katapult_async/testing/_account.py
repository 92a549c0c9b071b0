"""The simulated account as :class:`~._simulator.KatapultSimulator` exposes it.

Tokens, the organisation, speed profiles, VMs, interfaces and tasks: a base class of
``KatapultSimulator``, kept apart so that each class reads on its own. It works on the simulator's
:class:`~._api.ApiCore` and :class:`~._config.SimulatorConfig`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import types
from collections.abc import Iterable, Mapping
from typing import Literal

from ._api import ApiCore
from ._config import SimulatorConfig
from ._model import (
    ApiToken,
    Organization,
    SimulatedInterface,
    SimulatedSpeedProfile,
    SimulatedTask,
    VirtualMachine,
)


class SimulatorAccount:
    """What the simulated API serves: who may call it and the objects it reads and changes."""

    _config: SimulatorConfig
    _core: ApiCore
    _wall_offset: float

    def add_token(
        self,
        token: str,
        scopes: Iterable[str] | None = None,
        *,
        allowed_networks: Iterable[str] | None = None,
        rate_limit: int | Literal["default"] | None = "default",
    ) -> ApiToken:
        """Register another API token (or replace one).

        Args:
            token: The secret clients send as ``Authorization: Bearer <token>``.
            scopes: Granted scopes such as ``"virtual_machines"`` or ``"tasks:read"`` (the
                OAuth2 ``api.katapult.io/core/v1/`` prefix is accepted); None grants every scope.
            allowed_networks: Networks (``"10.0.0.0/8"``, ``"127.0.0.1"``) requests may come
                from; None allows any. Others get 403 ``unauthorized_network_for_api_token``.
            rate_limit: Requests per window for this token; ``"default"`` uses the configured
                ``rate_limit``, None means unlimited. Each token has its own count.

        Returns:
            The token's record.
        """
        networks = (
            None
            if allowed_networks is None
            else tuple(ipaddress.ip_network(network, strict=False) for network in allowed_networks)
        )
        return self._core.add_token(
            token,
            None if scopes is None else frozenset(scopes),
            networks,
            self._config.rate_limit if rate_limit == "default" else rate_limit,
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def organization(self) -> Organization:
        """The organisation that owns everything."""
        return self._core.world.organization

    @property
    def speed_profiles(self) -> Mapping[str, SimulatedSpeedProfile]:
        """Speed profiles by id: 10mbps, 100mbps, 500mbps, 1gbps, 10gbps and unrestricted."""
        return types.MappingProxyType(self._core.world.speed_profiles)

    def profile_by_permalink(self, permalink: str) -> SimulatedSpeedProfile:
        """Return the speed profile with this permalink, e.g. ``"1gbps"``; KeyError if none."""
        return self._core.world.profiles_by_permalink[permalink]

    @property
    def virtual_machines(self) -> Mapping[str, VirtualMachine]:
        """VMs by id. The default VM (``default_virtual_machine``) starts with no interfaces;
        two more (``sim-web-1``, ``sim-db-1``) have a public and a private interface each."""
        return types.MappingProxyType(self._core.world.virtual_machines)

    @property
    def default_virtual_machine(self) -> VirtualMachine:
        """The VM ``add_interfaces`` attaches to unless told otherwise."""
        return self._core.world.default_vm

    @property
    def organizations(self) -> Mapping[str, Organization]:
        """Organisations by id; the first is ``organization``, which owns the VMs by default."""
        return types.MappingProxyType(self._core.world.organizations)

    def add_organization(
        self,
        name: str,
        sub_domain: str,
        *,
        state: Literal["active", "suspended", "not_activated"] = "active",
    ) -> Organization:
        """Create another organisation (with no VMs) and return it.

        Args:
            name: Its name.
            sub_domain: Its sub-domain (unique), by which it can be looked up, as by its id.
            state: ``"suspended"`` and ``"not_activated"`` organisations are answered with 403
                ``organization_suspended`` / ``organization_not_activated``.

        Raises:
            ValueError: Another organisation has that sub-domain.
        """
        return self._core.world.add_organization(name, sub_domain, state=state)

    def add_virtual_machine(
        self,
        name: str | None = None,
        *,
        fqdn: str | None = None,
        annotations: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        organization_id: str | None = None,
    ) -> VirtualMachine:
        """Create a VM with no interfaces and return it.

        Args:
            name: Its name and hostname; ``sim-vm-<n>`` if None.
            fqdn: Its FQDN; ``<name>.<sub_domain>.kpult.com`` if None.
            annotations: Its annotations, ``{key: value}`` or ``(key, value)`` pairs, which the
                organisation's VM list filters by (a VM must match every pair asked for).
            organization_id: The organisation that owns it; ``organization`` if None.

        Raises:
            ValueError: Another VM has that FQDN.
            KeyError: No such organisation.
        """
        return self._core.world.add_virtual_machine(
            name, fqdn=fqdn, annotations=annotations, organization_id=organization_id
        )

    def add_interfaces(
        self, count: int, *, speed_profile: str = "10gbps", vm_id: str | None = None
    ) -> list[str]:
        """Create interfaces on a VM and return their ids in order.

        Fast enough for benchmarks (100,000 interfaces in well under a second). Ids are
        deterministic, unique, valid-looking ``vmnet_`` + 16 alphanumerics.

        Args:
            count: How many interfaces to create.
            speed_profile: Permalink or id of their initial profile.
            vm_id: The VM to attach them to; the default VM if None.

        Raises:
            KeyError: The profile or VM does not exist.
        """
        return self._core.world.add_interfaces(count, speed_profile=speed_profile, vm_id=vm_id)

    @property
    def interfaces(self) -> Mapping[str, SimulatedInterface]:
        """Every interface by id, after applying the reverts of tasks that have failed by now.

        A read-only live view: hold on to it across time and call ``settle()`` before reading
        it again to see later reverts.
        """
        self.settle()
        return types.MappingProxyType(self._core.world.interfaces)

    @property
    def tasks(self) -> Mapping[str, SimulatedTask]:
        """Every task by id (a read-only live view); ``task.status_at(clock())`` gives status."""
        return types.MappingProxyType(self._core.world.tasks)

    def settle(self) -> None:
        """Apply the reverts of every task that has failed by now."""
        self._core.world.settle(self._config.clock())

    async def wait_for_tasks(self, timeout: float | None = None) -> None:
        """Wait until every task that will finish has finished, then ``settle()``.

        Sleeps in real time, so with an injected clock it returns only once that clock has
        reached the last finish time.

        Raises:
            asyncio.TimeoutError: ``timeout`` seconds passed first.
        """

        async def wait() -> None:
            clock = self._config.clock
            while True:
                latest = self._core.world.latest_finish
                remaining = 0.0 if latest is None else latest - clock()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(remaining, 0.5))
            self.settle()

        await asyncio.wait_for(wait(), timeout)

    def to_wall(self, clock_time: float) -> float:
        """Convert a time on the simulator's ``clock`` to unix time."""
        return clock_time + self._wall_offset
