"""Frozen value types returned and accepted by the client.

They hold no (de)serialisation code: :mod:`katapult_async._convert` owns that. Unknown API fields are
ignored when decoding, so new fields on the server never break an old client.

:class:`Task` and :class:`TaskStatus` are defined below the errors, in :mod:`katapult_async._task`
(the task errors carry a ``Task``), and are public here.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

import attrs

from katapult_async._task import Task, TaskStatus
from katapult_async._validate import validate_identifier

if TYPE_CHECKING:
    from katapult_async.errors import RunHaltedError

__all__ = [
    "BulkProgress",
    "NetworkInterface",
    "NetworkInterfaceRef",
    "NetworkSpeedProfile",
    "Outcome",
    "SpeedProfileRef",
    "Task",
    "TaskStatus",
    "UpdateItem",
    "UpdateResult",
    "VirtualMachine",
]

# Defined in _task, public here: pickles and help() name them katapult_async.models.<name>.
Task.__module__ = TaskStatus.__module__ = __name__

SPEED_PROFILE_ID_PREFIX = "nsp_"


def _check_id(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        validate_identifier(value, what=attribute.name)


def _check_required_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    validate_identifier(value, what=attribute.name)


@attrs.frozen
class SpeedProfileRef:
    """A lookup for a network speed profile: exactly one of ``id`` or ``permalink``.

    Raises:
        ValueError: when both or neither are given, or a value is malformed.
    """

    id: str | None = attrs.field(default=None, kw_only=True, validator=_check_id)
    permalink: str | None = attrs.field(default=None, kw_only=True, validator=_check_id)

    def __attrs_post_init__(self) -> None:
        if (self.id is None) == (self.permalink is None):
            raise ValueError("SpeedProfileRef needs exactly one of id or permalink")

    @classmethod
    def parse(cls, value: str | SpeedProfileRef) -> SpeedProfileRef:
        """Turn a user's value into a ref: ``nsp_...`` is an id, any other string a permalink."""
        if isinstance(value, SpeedProfileRef):
            return value
        if not isinstance(value, str):
            raise TypeError(f"speed_profile must be a str or SpeedProfileRef, not {type(value)!r}")
        if value.startswith(SPEED_PROFILE_ID_PREFIX):
            return cls(id=value)
        return cls(permalink=value)

    def as_lookup(self) -> dict[str, str]:
        """The JSON lookup object the API expects (``{"id": ...}`` or ``{"permalink": ...}``)."""
        if self.id is not None:
            return {"id": self.id}
        assert self.permalink is not None
        return {"permalink": self.permalink}

    def __str__(self) -> str:
        return self.id if self.id is not None else str(self.permalink)


@attrs.frozen
class NetworkInterfaceRef:
    """A lookup for a virtual machine network interface by id (``vmnet_...``)."""

    id: str = attrs.field(validator=_check_required_id)

    @classmethod
    def parse(cls, value: str | NetworkInterfaceRef) -> NetworkInterfaceRef:
        """Turn a user's value (an id string, a ref or a :class:`NetworkInterface`) into a ref."""
        if isinstance(value, NetworkInterfaceRef):
            return value
        if isinstance(value, NetworkInterface):
            # What select_interfaces yields, so that its output feeds a bulk update directly.
            return cls(id=value.id)
        if not isinstance(value, str):
            raise TypeError(f"interface must be a str or NetworkInterfaceRef, not {type(value)!r}")
        return cls(id=value)


UpdateItem: TypeAlias = (
    tuple[str | NetworkInterfaceRef, str | SpeedProfileRef]
    | tuple[str | NetworkInterfaceRef, str | SpeedProfileRef, str | SpeedProfileRef | None]
)
"""One input item: an interface (id or ref) and the speed profile (id, permalink or ref) it gets,
optionally followed by the profile it had before (recorded as ``previous_speed_profile``)."""


@attrs.frozen
class NetworkSpeedProfile:
    """A network speed profile available to an organisation."""

    id: str
    name: str | None = None
    permalink: str | None = None
    upload_speed_in_mbit: int | None = None
    download_speed_in_mbit: int | None = None


@attrs.frozen
class NetworkInterface:
    """A virtual machine network interface (the fields this library uses).

    The per-VM interface list carries no speed profile, MAC address or state (they are ``None``);
    :meth:`~katapult_async.client.KatapultClient.get_network_interface` returns them all.
    ``virtual_machine_name`` is known from the single-interface read only.
    """

    id: str
    name: str | None = None
    virtual_machine_id: str | None = None
    network_id: str | None = None
    mac_address: str | None = None
    state: str | None = None
    speed_profile: NetworkSpeedProfile | None = None
    virtual_machine_name: str | None = None


@attrs.frozen
class VirtualMachine:
    """A virtual machine of an organization, as the organization's VM list shows it.

    Attributes:
        id: The VM id (``vm_...``).
        name: Its display name.
        hostname: Its hostname.
        fqdn: Its fully qualified domain name.
        created_at: When it was created (UTC), if the API said.
    """

    id: str
    name: str | None = None
    hostname: str | None = None
    fqdn: str | None = None
    created_at: datetime | None = None


class Outcome(str, enum.Enum):
    """How one item of a bulk update ended."""

    COMPLETED = "completed"
    """The task completed: the interface has the requested profile."""
    ALREADY_ASSIGNED = "already_assigned"
    """The API said the interface already had that profile: the desired state holds."""
    FAILED = "failed"
    """The task ended ``failed``."""
    ERROR = "error"
    """Any other error; see :attr:`UpdateResult.error`."""
    SUBMITTED = "submitted"
    """``wait=False`` and the PATCH was accepted."""
    SKIPPED = "skipped"
    """Nothing was sent for the item on purpose: the run halted before it started, or a revert
    left it alone (see :attr:`UpdateResult.error` for why)."""

    @property
    def is_success(self) -> bool:
        """Whether the desired state holds (or, for ``SUBMITTED``, was accepted)."""
        return self in (Outcome.COMPLETED, Outcome.ALREADY_ASSIGNED, Outcome.SUBMITTED)

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class UpdateResult:
    """The one result recorded for one input item of a bulk update.

    Attributes:
        interface_id: The interface id as given (may be invalid for ``ERROR`` results).
        speed_profile: The requested profile, normalised: ``SpeedProfileRef(id=...)`` or
            ``SpeedProfileRef(permalink=...)`` as given; ``None`` only for an input item that could
            not be parsed at all (its result is an ``ERROR``).
        outcome: How it ended.
        task: The last task seen, if a PATCH was accepted.
        error: The exception for ``ERROR`` and ``FAILED`` outcomes, else ``None``.
        index: The 0-based position of the item in the input.
        resumed: True when the result was taken from the journal of an earlier run (no PATCH
            was sent for it in this run).
        previous_speed_profile: The profile the interface had before the update, when known:
            given as the third element of the input item, or read from the API before the PATCH
            with ``record_previous=True``; ``None`` when not known.
        confirmed_after_lost_response: True when a PATCH for this item may have been applied
            without its answer reaching the client (a lost response, or a run that stopped
            between sending it and recording the answer), and the engine confirmed the outcome by
            waiting out the task horizon and sending the PATCH again: ``ALREADY_ASSIGNED`` then
            means the profile held after the unseen task ended; ``COMPLETED``/``FAILED`` that the
            unseen task failed and the new one was followed.
        verified: True when a rollout read the interface back after its task completed and
            found the requested profile (see :attr:`~katapult_async.Rollout.verify`).
    """

    interface_id: str
    speed_profile: SpeedProfileRef | None
    outcome: Outcome
    task: Task | None = None
    error: BaseException | None = attrs.field(default=None, eq=False)
    index: int = -1
    resumed: bool = False
    previous_speed_profile: SpeedProfileRef | None = None
    confirmed_after_lost_response: bool = False
    verified: bool = False


@attrs.frozen(slots=True)
class BulkProgress:
    """A snapshot of a bulk run, passed to ``on_progress``.

    ``started == done + in_flight + (results waiting to be yielded)``, and the six outcome counts
    add up to ``done``.

    Attributes:
        total: The number of input pairs, when known (``total=`` or ``len(updates)``).
        done: Results handed to the caller so far.
        started: Pairs taken from the input so far.
        in_flight: Pairs taken and not yet finished (validating, PATCHing or waiting for a task).
        completed: Results with outcome ``COMPLETED``.
        already_assigned: Results with outcome ``ALREADY_ASSIGNED``.
        failed: Results with outcome ``FAILED``.
        errors: Results with outcome ``ERROR``.
        submitted: Results with outcome ``SUBMITTED``.
        resumed: Results that came from the journal (no PATCH sent in this run).
        requests_per_second: The recent request rate of the token: the requests the client's
            rate limiter counted in the last ``window`` seconds (PATCHes and polls, plus others'
            use of the token that the rate-limit headers revealed) over ``min(window, elapsed)``;
            ``None`` at the very start.
        rate_limited: 429 answers the client has seen.
        limit: The rate limit the client works to (requests per window), if known.
        elapsed: Seconds since the run started.
        eta: Estimated seconds to finish, when ``total`` is known and some work is done: from
            the pace so far, or, when the requests left (two per item not started, one per item
            in flight) need more than the rate-limit budget has left, from the budget: when it
            refills and how many windows the rest takes, whichever is later.
        skipped: Results with outcome ``SKIPPED`` (items a halted run did not start).
        halted: Set once the run has halted: the error its skipped items carry, whose
            ``reason`` says why (a :class:`~katapult_async.errors.RunAbortedError` for an error
            no item could escape); ``None`` while the run goes on.
    """

    total: int | None
    done: int
    started: int
    in_flight: int
    completed: int
    already_assigned: int
    failed: int
    errors: int
    submitted: int
    resumed: int
    requests_per_second: float | None
    rate_limited: int
    limit: int | None
    elapsed: float
    eta: float | None
    skipped: int = 0
    halted: RunHaltedError | None = attrs.field(default=None, eq=False)
    windows_left: int | None = None
    """Rate-limit windows the requests left still need beyond what the budget has now (0 when
    it holds them all; ``None`` while the limit or ``total`` is unknown)."""
    refills_in: float | None = None
    """Seconds until the budget next frees a request, when the rate limiter knows."""

    @property
    def counts(self) -> Mapping[Outcome, int]:
        """The outcome counts as a read-only mapping."""
        return types.MappingProxyType(
            {
                Outcome.COMPLETED: self.completed,
                Outcome.ALREADY_ASSIGNED: self.already_assigned,
                Outcome.FAILED: self.failed,
                Outcome.ERROR: self.errors,
                Outcome.SUBMITTED: self.submitted,
                Outcome.SKIPPED: self.skipped,
            }
        )
