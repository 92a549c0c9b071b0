"""Every import points down a layer (ARCHITECTURE.md): the package's import graph has no cycle.

The graph is read from the source with :mod:`ast`, so it holds every import: the module-level ones,
those under ``if TYPE_CHECKING:`` (a cycle for types only is still a layer that looks up) and
those inside functions.
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

import katapult_async
from katapult_async import errors, models

PACKAGE = katapult_async.__name__
ROOT = Path(katapult_async.__file__).resolve().parent


def module_files() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: its dotted name, its file and whether it is a package."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def imported(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]
) -> set[str]:
    """The package's modules one import statement imports (a submodule, not its parents)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    if node.level:
        base = module.split(".")[: len(module.split(".")) - node.level + is_package]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    submodules = {f"{target}.{alias.name}" for alias in node.names} & modules
    names = set() if len(submodules) == len(node.names) else {target}
    return (submodules | names) & modules


def import_graph() -> dict[str, set[str]]:
    """Each module's imports of other modules of the package, at any depth of its source."""
    modules = module_files()
    names = set(modules)
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = {
            target
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for target in imported(node, module, is_package, names)
            if target != module
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the list of its modules (the first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph[module]):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        on_path.discard(path.pop())
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            cycle = visit(module)
            if cycle is not None:
                return cycle
    return None


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "an import points back up a layer: " + " -> ".join(cycle or ())


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("katapult_async.errors", "katapult_async.models"),
        ("katapult_async._task", "katapult_async.errors"),
        ("katapult_async.testing._admin", "katapult_async.testing._simulator"),
        ("katapult_async.testing._recorder", "katapult_async.testing._api"),
        ("katapult_async.testing._types", "katapult_async.testing._api"),
    ],
)
def test_the_lower_layer_does_not_import_the_higher(low: str, high: str) -> None:
    graph = import_graph()
    below = {module for module in graph if module == low or module.startswith(low + ".")}
    assert not any(high in graph[module] for module in below)


def test_the_simulator_imports_nothing_of_the_client() -> None:
    # testing/ is an independent implementation of the API; only its pytest plugin uses the client.
    graph = import_graph()
    testing = "katapult_async.testing"
    outside = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith(testing) and module != f"{testing}.pytest_plugin"
        for target in targets
        if not target.startswith(testing) and target != "katapult_async._lazy"
    }
    assert not outside


def test_the_graph_sees_imports_for_types_and_inside_functions() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import _task\n"
        "if TYPE_CHECKING:\n"
        "    from .models import Task\n"
        "def f() -> None:\n"
        "    from katapult_async.testing import _api\n"
    )
    modules = {"katapult_async._task", "katapult_async.models", "katapult_async.testing._api"}
    found = {
        target
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for target in imported(node, "katapult_async.errors", False, modules)
    }
    assert found == modules


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_types_moved_down_keep_their_public_names() -> None:
    task = models.Task(id="task_1", status=models.TaskStatus.FAILED)
    assert models.Task.__module__ == models.TaskStatus.__module__ == "katapult_async.models"
    assert b"katapult_async._task" not in pickle.dumps(errors.TaskFailedError(task))
    assert pickle.loads(pickle.dumps(errors.TaskFailedError(task))).task == task
