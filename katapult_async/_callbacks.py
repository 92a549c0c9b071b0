"""Progress callbacks: the :data:`ProgressCallback` type and :func:`call_callback`, the one helper
that calls one (sync or async) and awaits its result. Callers pass only immutable values."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T_contra = TypeVar("T_contra", contravariant=True)

ProgressCallback = Callable[[T_contra], Awaitable[None] | None]
"""A callable taking one snapshot value; it may be a plain function or a coroutine function."""


async def call_callback(callback: ProgressCallback[T_contra] | None, value: T_contra) -> None:
    """Call ``callback(value)`` and await the result if it is awaitable; exceptions propagate."""
    if callback is None:
        return
    result = callback(value)
    if inspect.isawaitable(result):
        await result
