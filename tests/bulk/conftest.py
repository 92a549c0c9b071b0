"""Fixtures of the bulk tests: a simulator on loopback and a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from katapult_async.client import KatapultClient
from katapult_async.testing import KatapultSimulator

from .helpers import make_client


@pytest.fixture
async def sim() -> AsyncIterator[KatapultSimulator]:
    async with KatapultSimulator(task_duration=0.05, seed=7) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: KatapultSimulator) -> AsyncIterator[KatapultClient]:
    async with make_client(sim) as katapult:
        yield katapult
