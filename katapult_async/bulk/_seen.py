"""The duplicate index of a bulk run: interface id -> position of its first item, in flat memory."""

from __future__ import annotations

import array


class _SeenIndex:
    """Maps interface ids to the index of their first item, in two flat arrays.

    Keys are stored as their 64-bit ``hash()`` (open addressing, linear probing, load <= 1/2), so an
    entry costs 16-32 bytes instead of the ~140 of a ``dict[str, int]`` holding the strings. Two
    different ids colliding on all 64 bits (odds about n**2 / 2**65) would make the second a
    reported duplicate.
    """

    __slots__ = ("_hashes", "_indexes", "_mask", "_size")

    def __init__(self, capacity: int = 1024) -> None:
        self._hashes = array.array("q", bytes(8 * capacity))
        self._indexes = array.array("q", [-1]) * capacity
        self._mask = capacity - 1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def first_or_add(self, key: str, index: int) -> int | None:
        """Return the index stored for ``key``, or store ``index`` for it and return ``None``."""
        h = hash(key)
        hashes, indexes, mask = self._hashes, self._indexes, self._mask
        slot = h & mask
        while True:
            found = indexes[slot]
            if found < 0:
                hashes[slot] = h
                indexes[slot] = index
                self._size += 1
                if self._size * 2 > mask:
                    self._grow()
                return None
            if hashes[slot] == h:
                return found
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        old_hashes, old_indexes = self._hashes, self._indexes
        capacity = (self._mask + 1) * 2
        self._hashes = hashes = array.array("q", bytes(8 * capacity))
        self._indexes = indexes = array.array("q", [-1]) * capacity
        self._mask = mask = capacity - 1
        for h, index in zip(old_hashes, old_indexes, strict=True):
            if index < 0:
                continue
            slot = h & mask
            while indexes[slot] >= 0:
                slot = (slot + 1) & mask
            hashes[slot] = h
            indexes[slot] = index
