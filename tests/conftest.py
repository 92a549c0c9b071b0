from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def recorded_interactions() -> list[dict[str, Any]]:
    data = load_fixture("recorded-interactions.json")
    interactions: list[dict[str, Any]] = data["interactions"]
    return interactions
