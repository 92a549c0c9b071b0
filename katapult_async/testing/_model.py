"""Frozen values that describe the simulator's world and what it saw."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from typing import Any

import attrs

from ._config import TaskProgress
from ._faults import FaultKind
from ._ids import opaque_id

TASK_NAME = "Change network interface speed profile"
"""The name the live API gives speed-profile tasks."""


class SimulatedTaskStatus(str, enum.Enum):
    """A simulated task's status, as the API reports it.

    The simulator's own enum (it imports nothing from the client); the values are those of
    ``katapult_async.TaskStatus``.
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class TaskOutcome(str, enum.Enum):
    """How a simulated task ends, decided when it is created."""

    COMPLETED = "completed"
    FAILED = "failed"
    NEVER_FINISHES = "never_finishes"
    NO_CHANGE = "no_change"
    """Reported ``completed``, but the interface is put back on its previous profile when the
    task ends (``SimulatorConfig.task_no_change_rate``): a change that did not stick."""


ORGANIZATION_STATES = ("active", "suspended", "not_activated")
"""An organisation's state: only an ``active`` one is served; the others get 403
``organization_suspended`` / ``organization_not_activated``."""


@attrs.frozen
class Organization:
    """A simulated organisation (the default one owns the VMs made without naming another).

    Attributes:
        id: The id (``org_...``).
        name: Its name.
        sub_domain: Its sub-domain, the other way to look it up.
        state: One of :data:`ORGANIZATION_STATES`.
    """

    id: str
    name: str
    sub_domain: str
    state: str = attrs.field(default="active", validator=attrs.validators.in_(ORGANIZATION_STATES))


@attrs.frozen
class SimulatedSpeedProfile:
    """A simulated network speed profile (``nsp_...``), looked up by id or permalink."""

    id: str
    name: str
    permalink: str
    upload_speed_in_mbit: int | None
    download_speed_in_mbit: int | None


@attrs.frozen
class Network:
    """A network that interfaces attach to (``netw_...``)."""

    id: str
    name: str


@attrs.frozen
class VirtualMachine:
    """A simulated virtual machine (``vm_...``).

    Attributes:
        id: The VM id.
        name: Its name (and hostname).
        hostname: Its hostname.
        fqdn: Its FQDN, the other way to look it up.
        organization_id: The organisation that owns it.
        annotations: Its ``(key, value)`` annotations, which the organisation's VM list filters by.
        created_at: Unix time it was created.
    """

    id: str
    name: str
    hostname: str
    fqdn: str
    organization_id: str = ""
    annotations: tuple[tuple[str, str], ...] = ()
    created_at: int = 0

    def matches(self, annotations: tuple[tuple[str, str], ...]) -> bool:
        """Whether the VM has every one of ``annotations`` (AND)."""
        own = set(self.annotations)
        return all(pair in own for pair in annotations)


@attrs.frozen
class SimulatedInterface:
    """A virtual machine network interface (``vmnet_...``) as the simulator holds it now.

    A new value replaces the old one whenever the interface's speed profile changes, so a value
    you hold is a snapshot.

    Attributes:
        id: The interface id.
        number: Sequence number of the interface in this simulator (derives MAC and IP).
        name: Display name, e.g. ``"Public Network on sim-vm-1"``.
        virtual_machine_id: The VM it belongs to.
        network_id: The network it is attached to.
        speed_profile_id: Id of the speed profile assigned to it.
    """

    id: str
    number: int
    name: str
    virtual_machine_id: str
    network_id: str
    speed_profile_id: str

    @property
    def mac_address(self) -> str:
        """A stable, locally administered MAC address derived from ``number``."""
        n = self.number
        return (
            f"02:00:{(n >> 24) & 255:02x}:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"
        )

    @property
    def ip_address(self) -> str:
        """A stable IPv4 address in 10.0.0.0/8 derived from ``number``."""
        return str(ipaddress.IPv4Address(0x0A000000 + (self.number + 1) % 0x1000000))

    @property
    def ip_address_id(self) -> str:
        """Id (``ip_...``) of the interface's IP address."""
        return opaque_id("ip_", self.number)


@attrs.frozen
class SimulatedTask:
    """A speed-profile change task. Its status follows from the clock; the value never changes.

    Times named ``created``, ``starts_at`` and ``finishes_at`` are on the simulator's ``clock``
    (``time.monotonic`` unless injected); the ``*_wall`` ones are unix seconds.

    Attributes:
        id: The task id (``task_...``).
        interface_id: The interface whose profile the task changes.
        speed_profile_id: The profile assigned by the task.
        previous_speed_profile_id: The profile before, restored if the task fails.
        outcome: How the task ends.
        created: Clock time the PATCH was accepted.
        created_wall: Unix time the PATCH was accepted.
        starts_at: Clock time the task turns from ``pending`` to ``running``.
        duration: Seconds from ``created`` to the end (nominal for tasks that never finish).
        finish_on_poll: With ``SimulatorConfig.task_polls``: the read that ends the task, while
            it has not ended (it is ``running`` until then); None for tasks on the clock and
            once the task has ended, when ``duration`` says when that was.
        polls: Reads of the task so far, counted only with ``task_polls``.
        progress_mode: How ``progress`` moves while the task runs
            (``SimulatorConfig.task_progress``).
    """

    id: str
    interface_id: str
    speed_profile_id: str
    previous_speed_profile_id: str
    outcome: TaskOutcome
    created: float
    created_wall: float
    starts_at: float
    duration: float
    finish_on_poll: int | None = None
    polls: int = 0
    progress_mode: TaskProgress = "rising"

    @property
    def finishes_at(self) -> float | None:
        """Clock time the task completes or fails; None if it never finishes (or not yet known)."""
        if self.outcome is TaskOutcome.NEVER_FINISHES or self.finish_on_poll is not None:
            return None
        return self.created + self.duration

    @property
    def starts_at_wall(self) -> float:
        """Unix time the task starts running."""
        return self.created_wall + (self.starts_at - self.created)

    @property
    def finishes_at_wall(self) -> float | None:
        """Unix time the task finishes; None if it never does (or not yet known)."""
        if self.outcome is TaskOutcome.NEVER_FINISHES or self.finish_on_poll is not None:
            return None
        return self.created_wall + self.duration

    def status_at(self, now: float) -> SimulatedTaskStatus:
        """Return the task's status at clock time ``now``."""
        if now < self.starts_at:
            return SimulatedTaskStatus.PENDING
        finishes_at = self.finishes_at
        if finishes_at is None or now < finishes_at:
            return SimulatedTaskStatus.RUNNING
        if self.outcome is TaskOutcome.FAILED:
            return SimulatedTaskStatus.FAILED
        return SimulatedTaskStatus.COMPLETED

    def progress_at(self, now: float) -> int:
        """Return the task's progress (0-100) at clock time ``now``.

        0 while pending, 5 when it starts running, 100 once completed; a failed task keeps the
        progress it had reached. While running, a ``"rising"`` task's progress rises linearly to
        95 (by reads with ``task_polls``), a ``"live"`` one's stays at 5 as the live API's does.
        """
        if now < self.starts_at:
            return 0
        if self.progress_mode == "live":
            if self.status_at(now) is SimulatedTaskStatus.COMPLETED:
                return 100
            return 5
        if self.finish_on_poll is not None:
            return 5 + int(90 * min(self.polls, self.finish_on_poll) / self.finish_on_poll)
        run = self.created + self.duration - self.starts_at
        completes = self.outcome is TaskOutcome.COMPLETED or self.outcome is TaskOutcome.NO_CHANGE
        if completes and now >= self.created + self.duration:
            return 100
        share = 1.0 if run <= 0 else min(1.0, (now - self.starts_at) / run)
        return 5 + int(90 * share)


@attrs.frozen
class ApiToken:
    """An API token the simulator accepts.

    Attributes:
        token: The secret sent as ``Authorization: Bearer <token>``.
        scopes: Granted scopes, or None for every scope.
        allowed_networks: Networks requests may come from, or None for anywhere.
        rate_limit: Requests per window for this token, or None for no limit.
    """

    token: str = attrs.field(repr=False)
    scopes: frozenset[str] | None
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None
    rate_limit: int | None


@attrs.frozen
class RecordedRequest:
    """One API request as the simulator received it (admin ``/_sim/`` requests are not logged).

    Attributes:
        method: HTTP method.
        path: URL path, e.g. ``/core/v1/tasks/task``.
        query: Query parameters as sent (last value wins for repeated keys).
        body: The JSON body parsed, the raw text if it was not valid JSON, None if empty.
        headers: Request headers, ``Authorization`` included.
        token: The bearer token sent, or None.
        at: Simulator clock time the request arrived.
        status: Status code answered, or None if no response reached the client (a dropped
            connection or a lost response).
        fault: The injected fault applied, if any.
        request_id: The ``X-Request-Id`` given to the request.
    """

    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    headers: Mapping[str, str]
    token: str | None
    at: float
    status: int | None
    fault: FaultKind | None
    request_id: str


@attrs.frozen
class SimulatorStats:
    """Counters over API requests, kept even when the request log is off.

    Attributes:
        total: API requests received (admin requests excluded).
        by_status: Number of responses per status code; dropped ones are not included.
        rate_limited: Responses with status 429 (real or injected).
        patches: Speed-profile update requests, whatever their outcome.
        task_polls: Task reads, whatever their outcome.
        tasks_created: Tasks created by accepted updates.
        dropped: Requests that got no response (dropped connections, lost responses).
        faults: Number of injected faults applied, per kind.
    """

    total: int
    by_status: Mapping[int, int]
    rate_limited: int
    patches: int
    task_polls: int
    tasks_created: int
    dropped: int
    faults: Mapping[FaultKind, int]
