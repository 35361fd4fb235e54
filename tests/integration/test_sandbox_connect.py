"""sandbox-connect against the emulator, whose URLs and answers match the real sandbox's."""

from __future__ import annotations

import asyncio
import re
import socket

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Start
from worker.emulator.config import EmulatorConfig, RegisteredClient
from worker.emulator.useragent import authorize
from worker.sandbox_connect import CallbackError, code_from_callback, run_sandbox_connect


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_prints_url_checks_state_and_queues_the_connect(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # ``pool``: an empty database (tokens an earlier test sealed under its own key would
    # stop the worker's key check).
    port = free_port()
    callback = f"http://localhost:{port}/api/auth/smart/callback"
    client = RegisteredClient(redirect_uris=(callback,))
    _, settings, _ = await start(EmulatorConfig(beneficiaries=1, clients=(client,)))
    said: list[str] = []
    url_ready = asyncio.Event()

    def announce(text: str) -> None:
        said.append(text)
        url_ready.set()

    flow = asyncio.create_task(
        run_sandbox_connect(settings, connection_id="sbx-1", port=port, announce=announce)
    )
    await url_ready.wait()
    url = re.search(r"http://\S+", said[0]).group(0)  # type: ignore[union-attr]
    state = re.search(r"state=([^&]+)", url).group(1)  # type: ignore[union-attr]
    assert len(state) >= 32
    async with httpx.AsyncClient() as browser:
        location = await authorize(browser, url, "BBUser00000", "PW00000!")
        assert location.startswith(callback)
        page = await browser.get(location)  # the browser lands on our callback
        assert page.status_code == 200
    assert await flow == 0
    jobs = await redis.zrange("arq:queue", 0, -1)
    assert len(jobs) == 1
    assert jobs[0].decode().startswith("connect:sbx-1:")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"code": "c", "state": "other"}, "state does not match"),
        ({"state": "s" * 43}, "no code"),
        ({"error": "access_denied", "state": "s" * 43}, "access_denied"),
    ],
)
def test_bad_callbacks_are_refused(query: dict[str, str], reason: str) -> None:
    with pytest.raises(CallbackError, match=reason):
        code_from_callback(query, "s" * 43)
