"""The in-process server used by tests and the demo."""

import asyncio
import socket

import httpx
import pytest

from worker.emulator.config import EmulatorConfig
from worker.emulator.server import _bind, running_emulator
from worker.emulator.state import EmulatorState


async def test_running_emulator_serves_on_a_free_port_and_stops_cleanly() -> None:
    state = EmulatorState()
    tasks_before = len(asyncio.all_tasks())
    async with running_emulator(EmulatorConfig(), state=state) as emulator:
        async with httpx.AsyncClient(base_url=emulator.base_url) as http:
            metadata = await http.get("/v2/fhir/metadata")
        base_url = emulator.base_url
    assert emulator.state is state
    assert base_url.startswith("http://127.0.0.1:")
    assert int(base_url.rsplit(":", 1)[1]) > 0
    assert metadata.status_code == 200
    assert f"{base_url}/v2/o/token/" in metadata.text
    assert state.stats()["by_endpoint"] == {"metadata": 1}
    assert len(asyncio.all_tasks()) == tasks_before
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{base_url}/v2/fhir/metadata")


def test_connections_are_accepted_without_nagle_delays() -> None:
    sock = _bind("127.0.0.1", 0)
    try:
        nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()
    # Accepted connections inherit it; without it each answer waits for a delayed ACK.
    assert nodelay != 0
