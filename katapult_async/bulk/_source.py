"""The input of a bulk run: pairs pulled lazily from a sync or async iterable, and one pair's parsing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

from katapult_async.models import NetworkInterfaceRef, SpeedProfileRef, UpdateItem


class _PairSource:
    """Takes raw pairs from the caller's iterable one at a time, as workers ask, and numbers them.

    Nothing is read ahead. An async iterator is advanced under a lock (several workers pull at once
    and ``__anext__`` may not be re-entered); a sync one needs none, since ``next`` never yields to
    the loop. The first exception the input raises ends it: :attr:`error` keeps it for the caller,
    who raises it once the items in progress have finished.

    Attributes:
        taken: Pairs taken so far (the index the next one gets).
        error: What the input iterator raised, if it did.
    """

    def __init__(self, updates: Iterable[UpdateItem] | AsyncIterable[UpdateItem]) -> None:
        self._updates = updates
        self._sync_iter: Iterator[object] | None = None
        self._async_iter: AsyncIterator[object] | None = None
        self._owns_iter = False
        self._lock = asyncio.Lock()
        self._exhausted = False
        self.taken = 0
        self.error: Exception | None = None

    def open(self) -> None:
        """Get the iterator; one created here (from an iterable) is closed by :meth:`close`."""
        updates = self._updates
        if isinstance(updates, AsyncIterable):
            self._async_iter = aiter = updates.__aiter__()
            self._owns_iter = aiter is not updates
        else:
            self._sync_iter = it = iter(updates)
            self._owns_iter = it is not updates

    async def close(self) -> None:
        """Close the iterator if :meth:`open` created it; one passed in is left open."""
        if not self._owns_iter:
            return
        if self._async_iter is not None:
            aclose = getattr(self._async_iter, "aclose", None)
            if aclose is not None:
                await aclose()
        elif self._sync_iter is not None:
            close = getattr(self._sync_iter, "close", None)
            if close is not None:
                close()

    async def pull(self) -> tuple[int, object] | None:
        """The next pair and its index, or ``None`` when the input is exhausted (or failed)."""
        if self._exhausted:
            return None
        if self._sync_iter is not None:
            try:
                raw = next(self._sync_iter)
            except StopIteration:
                self._exhausted = True
                return None
            except Exception as exc:
                self._failed(exc)
                return None
        else:
            assert self._async_iter is not None
            async with self._lock:
                if self._exhausted:
                    return None
                try:
                    raw = await self._async_iter.__anext__()
                except StopAsyncIteration:
                    self._exhausted = True
                    return None
                except Exception as exc:
                    self._failed(exc)
                    return None
        index = self.taken
        self.taken = index + 1
        return index, raw

    def _failed(self, exc: Exception) -> None:
        # Raised to the caller once the items in progress have finished and been yielded.
        self._exhausted = True
        self.error = exc


def _parse_pair(
    raw: object,
) -> tuple[NetworkInterfaceRef, SpeedProfileRef, SpeedProfileRef | None]:
    """Validate one input item: a pair, or a triple whose third element is the previous profile.

    Raises:
        TypeError, ValueError: with a message that names the part at fault.
    """
    if not isinstance(raw, (tuple, list)) or len(raw) not in (2, 3):
        raise TypeError(
            "expected an (interface, speed_profile) pair or an (interface, speed_profile, "
            f"previous_speed_profile) triple, got {_short_repr(raw)}"
        )
    interface, speed_profile = raw[0], raw[1]
    try:
        iface = NetworkInterfaceRef.parse(interface)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"invalid interface {_short_repr(interface)}: {exc}") from exc
    try:
        profile = SpeedProfileRef.parse(speed_profile)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"invalid speed profile {_short_repr(speed_profile)}: {exc}") from exc
    previous: SpeedProfileRef | None = None
    if len(raw) == 3 and raw[2] is not None:
        try:
            previous = SpeedProfileRef.parse(raw[2])
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"invalid previous speed profile {_short_repr(raw[2])}: {exc}") from exc
    return iface, profile, previous


def _parts_of_bad_pair(raw: object) -> tuple[str, SpeedProfileRef | None]:
    """The interface text and the requested profile (if it parses) of an item that did not."""
    pair = raw if isinstance(raw, (tuple, list)) and len(raw) in (2, 3) else ("", None)
    profile: SpeedProfileRef | None = None
    if isinstance(pair[1], (str, SpeedProfileRef)):
        try:
            profile = SpeedProfileRef.parse(pair[1])
        except (TypeError, ValueError):
            profile = None
    return _as_text(pair[0]), profile


def _as_text(value: object) -> str:
    """The user's value as a string for a result (the id itself when it is one)."""
    if isinstance(value, str):
        return value
    if isinstance(value, NetworkInterfaceRef):
        return value.id
    if isinstance(value, SpeedProfileRef):
        return str(value)
    return _short_repr(value)


def _short_repr(value: object) -> str:
    """``repr(value)``, cut to 80 characters, for messages about a user's malformed input."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
