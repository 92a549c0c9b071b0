"""Planning a change: what a bulk update would do to each interface, read from the API.

:func:`plan_speed_profiles` reads each interface once (one paced GET, ``concurrency`` at a time)
and yields its :class:`PlanItem`, in input order: ``change`` (it has another profile),
``unchanged`` (it has the target already) or ``error`` (a malformed item, a duplicate, an
interface that cannot be read). Nothing is changed. :func:`profile_matches` and
:func:`profile_text` compare and show profiles the same way for plans, reverts and verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from typing import Protocol, TypeAlias, TypeVar

import attrs

from katapult_async import _telemetry
from katapult_async.errors import DuplicateItemError, KatapultError
from katapult_async.models import (
    NetworkInterface,
    NetworkInterfaceRef,
    NetworkSpeedProfile,
    SpeedProfileRef,
    UpdateItem,
)

__all__ = ["PlanAction", "PlanItem", "PlanTarget", "each", "plan_speed_profiles"]

T = TypeVar("T")

PlanTarget: TypeAlias = str | NetworkInterfaceRef | NetworkInterface | UpdateItem
"""One input of a plan: an interface (id, ref or :class:`NetworkInterface`), whose target is the
plan's ``speed_profile``, or an ``(interface, speed_profile)`` pair with its own target."""


class PlanAction(str, enum.Enum):
    """What a bulk update would do to one interface."""

    CHANGE = "change"
    """The interface has another profile: the update would change it."""
    UNCHANGED = "unchanged"
    """The interface has the target profile already."""
    ERROR = "error"
    """The item is malformed or a duplicate, or the interface could not be read."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class PlanItem:
    """What a bulk update would do to one interface, as read from the API.

    Attributes:
        interface_id: The interface id as given.
        virtual_machine: The VM's name, else its id (``None`` when the interface was not read).
        current_speed_profile: The profile the interface has now (``None`` when not read or it
            has none).
        speed_profile: The target profile, normalised (``None`` for an item whose target could
            not be parsed).
        action: ``CHANGE``, ``UNCHANGED`` or ``ERROR``.
        error: The reason for ``ERROR`` (a ``ValueError``/``TypeError`` for a malformed item, a
            :class:`DuplicateItemError`, or the API or transport error reading it), else ``None``.
        index: The 0-based position of the item in the input.
    """

    interface_id: str
    virtual_machine: str | None
    current_speed_profile: NetworkSpeedProfile | None
    speed_profile: SpeedProfileRef | None
    action: PlanAction
    error: BaseException | None = attrs.field(default=None, eq=False)
    index: int = -1


class SupportsPlan(Protocol):
    """The part of :class:`~katapult_async.client.KatapultClient` a plan uses."""

    async def get_network_interface(
        self, interface: NetworkInterfaceRef, /
    ) -> NetworkInterface: ...


def profile_text(profile: NetworkSpeedProfile | None) -> str | None:
    """How a profile is shown and recorded: its permalink, else its id (``None`` for none)."""
    if profile is None:
        return None
    return profile.permalink or profile.id


def profile_matches(
    profile: NetworkSpeedProfile | None, wanted: SpeedProfileRef | str | None
) -> bool:
    """Whether ``profile`` is the one ``wanted`` names (a ref, or ``nsp_...`` id / permalink)."""
    if profile is None or wanted is None:
        return False
    try:
        ref = SpeedProfileRef.parse(wanted)
    except (TypeError, ValueError):
        return False
    if ref.id is not None:
        return profile.id == ref.id
    return profile.permalink == ref.permalink


def plan_speed_profiles(
    client: SupportsPlan,
    interfaces: Iterable[PlanTarget] | AsyncIterable[PlanTarget],
    speed_profile: str | SpeedProfileRef | None = None,
    *,
    concurrency: int = 8,
) -> AsyncGenerator[PlanItem, None]:
    """Yield one :class:`PlanItem` per input item, in input order; change nothing.

    Each interface is read once (``get_network_interface``, through the client's rate limiter),
    up to ``concurrency`` at a time, and compared with its target. A malformed item, or an
    interface given a second time (:class:`DuplicateItemError`), is an ``ERROR`` item without a
    request; so is an interface that cannot be read (the error says why). The input is consumed
    lazily, ``concurrency`` items ahead of the items yielded.

    Args:
        client: A :class:`~katapult_async.client.KatapultClient` (or any object with its
            ``get_network_interface``).
        interfaces: A sync or async iterable of interfaces (ids, refs or the
            :class:`NetworkInterface` values ``select_interfaces`` yields), or of
            ``(interface, speed_profile)`` pairs that name their own target.
        speed_profile: The target of the items that are bare interfaces.
        concurrency: Interfaces read at once (default 8).

    Raises:
        ValueError: at once, for a ``concurrency`` below 1 or a malformed ``speed_profile``.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    target = SpeedProfileRef.parse(speed_profile) if speed_profile is not None else None
    return _telemetry.traced_iteration(
        "katapult.plan_speed_profiles",
        _plan(client, interfaces, target, concurrency),
        concurrency=concurrency,
    )


async def _plan(
    client: SupportsPlan,
    interfaces: Iterable[PlanTarget] | AsyncIterable[PlanTarget],
    target: SpeedProfileRef | None,
    concurrency: int,
) -> AsyncGenerator[PlanItem, None]:
    first_index: dict[str, int] = {}
    window: deque[asyncio.Task[PlanItem]] = deque()

    async def read(index: int, raw: object) -> PlanItem:
        try:
            iface, profile = _parse(raw, target)
        except (TypeError, ValueError) as exc:
            interface_id = _interface_text(raw)
            return PlanItem(interface_id, None, None, None, PlanAction.ERROR, exc, index)
        first = first_index.setdefault(iface.id, index)
        if first != index:
            duplicate = DuplicateItemError(iface.id, index, first)
            return PlanItem(iface.id, None, None, profile, PlanAction.ERROR, duplicate, index)
        try:
            interface = await client.get_network_interface(iface)
        except (KatapultError, ValueError) as exc:
            return PlanItem(iface.id, None, None, profile, PlanAction.ERROR, exc, index)
        current = interface.speed_profile
        action = PlanAction.UNCHANGED if profile_matches(current, profile) else PlanAction.CHANGE
        vm = interface.virtual_machine_name or interface.virtual_machine_id
        return PlanItem(iface.id, vm, current, profile, action, None, index)

    loop = asyncio.get_running_loop()
    try:
        index = 0
        async with contextlib.aclosing(each(interfaces)) as items:
            async for raw in items:
                window.append(loop.create_task(read(index, raw)))
                index += 1
                if len(window) >= concurrency:
                    yield await window.popleft()
        while window:
            yield await window.popleft()
    finally:
        for task in window:
            task.cancel()
        for task in window:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _parse(
    raw: object, target: SpeedProfileRef | None
) -> tuple[NetworkInterfaceRef, SpeedProfileRef]:
    """The interface and target of one plan item."""
    if isinstance(raw, (tuple, list)):
        if len(raw) not in (2, 3):
            raise TypeError(f"expected an interface or an (interface, speed_profile) pair: {raw!r}")
        return NetworkInterfaceRef.parse(raw[0]), SpeedProfileRef.parse(raw[1])
    iface = NetworkInterfaceRef.parse(raw)  # type: ignore[arg-type]
    if target is None:
        raise ValueError(f"interface {iface.id}: no target speed profile (give speed_profile=)")
    return iface, target


def _interface_text(raw: object) -> str:
    value = raw[0] if isinstance(raw, (tuple, list)) and raw else raw
    if isinstance(value, (NetworkInterfaceRef, NetworkInterface)):
        return value.id
    return value if isinstance(value, str) else ""


async def each(items: Iterable[T] | AsyncIterable[T]) -> AsyncGenerator[T, None]:
    """The items of a sync or async iterable, as an async generator."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
