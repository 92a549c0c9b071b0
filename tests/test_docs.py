"""The documentation site: ``mkdocs build --strict`` passes and lists every public name."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import pytest

pytest.importorskip("mkdocstrings_handlers.python")

import katapult_async
import katapult_async.testing
import katapult_async.testing.pytest_plugin

ROOT = Path(__file__).resolve().parent.parent


def inventory(site: Path) -> set[str]:
    """The object names in a built site's ``objects.inv`` (Sphinx inventory version 2)."""
    data = (site / "objects.inv").read_bytes()
    body = zlib.decompress(data.split(b"\n", 4)[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line}


@pytest.mark.slow
def test_the_site_builds_strictly_and_documents_every_public_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT,
        check=True,
    )
    documented = inventory(site)
    modules = [katapult_async, katapult_async.testing, katapult_async.testing.pytest_plugin]
    missing = [
        f"{module.__name__}.{name}"
        for module in modules
        for name in module.__all__
        if name != "__version__" and f"{module.__name__}.{name}" not in documented
    ]
    assert not missing, f"public names missing from the API reference: {missing}"
