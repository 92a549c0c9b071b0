"""Fixtures of the simulator tests: a client session and a running simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from katapult_async.testing import KatapultSimulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def sim() -> AsyncIterator[KatapultSimulator]:
    async with KatapultSimulator(rate_limit=1000, task_duration=0.2) as simulator:
        yield simulator
