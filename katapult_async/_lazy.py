"""Lazy re-exports (PEP 562): a package ``__init__`` that imports its public names on first use.

pytest imports ``katapult_async.testing.pytest_plugin`` when it starts, in every project that has
the package installed, and importing it imports ``katapult_async`` and ``katapult_async.testing``
first. Eager re-exports there would load aiohttp (client and server), attrs and cattrs into every
test run, used or not (about 0.3 s). With :func:`lazy_attributes` the two packages import nothing
until a name is used; the names stay in the ``if TYPE_CHECKING:`` imports of each ``__init__`` for
type checkers, documentation tools and readers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, MutableMapping, Sequence

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str,
    names: Collection[str],
    sources: Sequence[str],
    namespace: MutableMapping[str, object],
    submodules: Collection[str] = (),
) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports its public names on first use.

    Args:
        package: The package's ``__name__``.
        names: The names to provide (its ``__all__``).
        sources: Its modules that define them (relative names), searched in this order.
        namespace: The package's ``globals()``: a name found is stored there, so that the next
            use is an ordinary attribute lookup.
        submodules: Submodules reachable as attributes (``katapult_async.client``), imported on
            first use too.

    Returns:
        The function to bind to the package's ``__getattr__``; it raises ``AttributeError`` for
        any other name.
    """

    def __getattr__(name: str) -> object:
        if name in names:
            for source in sources:
                defined = vars(importlib.import_module(f"{package}.{source}"))
                if name in defined:
                    namespace[name] = value = defined[name]
                    return value
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
