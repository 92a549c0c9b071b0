"""The public surface: ``__all__`` names exactly what each public module exports, both ways.

As httpx's ``test_exported_members.py``: for the two re-exporting packages (``katapult_async`` and
``katapult_async.testing``) every name in ``__all__`` exists and every public name is in
``__all__``; for the public modules behind them, every public class or function they define is in
their ``__all__`` and re-exported at the top level.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import katapult_async


def _public(module: object) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }


@pytest.mark.parametrize("module_name", ["katapult_async", "katapult_async.testing"])
def test_all_equals_the_public_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert list(module.__all__) == sorted(module.__all__), "keep __all__ sorted"
    assert set(module.__all__) - set(dir(module)) == set(), "in __all__ but missing"
    assert _public(module) - set(module.__all__) == set(), "public but not in __all__"


@pytest.mark.parametrize(
    "module_name",
    [
        "katapult_async.bulk",
        "katapult_async.client",
        "katapult_async.errors",
        "katapult_async.models",
        "katapult_async.poller",
    ],
)
def test_public_modules_define_only_exported_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__.startswith(module_name)
    }
    exported = set(getattr(module, "__all__", defined))
    assert defined - exported == set(), "defined here, public, but not in __all__"
    for name in exported:
        if name == "error_from_response" or name.isupper():
            continue  # constants and the error table's reader stay in their module
        assert getattr(katapult_async, name) is getattr(module, name), name
