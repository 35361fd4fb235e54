"""Fixtures of the emulator tests: in-process apps with a fake clock."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest

from tests.emulator.support import FakeClock, Harness, MakeHarness
from worker.emulator.app import build_app
from worker.emulator.config import EmulatorConfig
from worker.emulator.state import EmulatorState


@pytest.fixture
async def make_harness() -> AsyncIterator[MakeHarness]:
    """Build harnesses for custom configs; all clients close at the end of the test."""
    async with AsyncExitStack() as stack:

        async def make(config: EmulatorConfig | None = None) -> Harness:
            clock = FakeClock()
            state = EmulatorState(now=clock, sleep=clock.sleep)
            app = build_app(config or EmulatorConfig(), state)
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            http = await stack.enter_async_context(client)
            return Harness(http=http, clock=clock, state=state)

        yield make


@pytest.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    """A harness on the default config."""
    return await make_harness()
