"""The duplicate index (``bulk._seen``)."""

from __future__ import annotations

from katapult_async.bulk._seen import _SeenIndex


def test_seen_index_grows_and_finds_first_indexes() -> None:
    seen = _SeenIndex(capacity=8)
    keys = [f"vmnet_{n:016d}" for n in range(5000)]
    for index, key in enumerate(keys):
        assert seen.first_or_add(key, index) is None
    assert len(seen) == 5000
    for index, key in enumerate(keys):
        assert seen.first_or_add(key, index + 10_000) == index
    assert len(seen) == 5000
