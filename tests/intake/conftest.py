"""The intake app on real Redis (db 15) and Postgres (bbingest_test), reached in-process
through httpx's ASGI transport, with its lifespan opening its own connections."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.conftest import (  # noqa: F401
    DATABASE_URL,
    REDIS_URL,
    encryption_key,
    migrated,
    pool,
    redis,
    start,
)
from worker.intake.app import build_app
from worker.intake.auth import sign
from worker.intake.backends import OpenBackends, open_backends
from worker.settings import Settings, load_settings

SECRET = "test-intake-secret-" + "x" * 24
KEY = SECRET.encode()
CONNECT_PATH = "/v1/events/connect"
VERIFIER = "v" * 64
# Settings every intake test shares: the test database and Redis, no metrics port.
INTAKE_ENV = {"INTAKE_SECRET": SECRET, "METRICS_PORT": "0"}

Connect = Callable[..., Awaitable[httpx.AsyncClient]]


def intake_settings(**extra: str) -> Settings:
    """Settings on the test database and Redis, with the intake secret."""
    return load_settings(
        {"DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, **INTAKE_ENV, **extra}
    )


@pytest.fixture
async def connect_intake() -> AsyncIterator[Connect]:
    """Start an intake app (lifespan included) for the given settings; a client on it."""
    async with AsyncExitStack() as stack:

        async def _connect(
            settings: Settings, backends: OpenBackends = open_backends
        ) -> httpx.AsyncClient:
            app = build_app(settings, backends)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://intake")
            )

        yield _connect


@pytest.fixture(scope="session")
async def shared_intake(
    migrated: str,  # noqa: F811 - the fixture: events look up the connection they name
) -> AsyncIterator[httpx.AsyncClient]:
    """One intake app for the session: its lifespan (Redis, Postgres) opens once."""
    app = build_app(intake_settings())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        yield c


@pytest.fixture
async def intake(
    redis: Any,  # noqa: F811 - the fixture: an empty Redis database
    shared_intake: httpx.AsyncClient,
) -> httpx.AsyncClient:
    """A client on the intake app, over an empty Redis (ask for ``pool`` to empty Postgres)."""
    return shared_intake


async def post_signed(
    client: httpx.AsyncClient,
    path: str,
    payload: Any,
    *,
    key: bytes = KEY,
    timestamp: int | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    """POST ``payload`` as JSON (or raw bytes) with a valid signature."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = {"Content-Type": content_type, **sign(key, "POST", path, body, timestamp)}
    return await client.post(path, content=body, headers=headers)


async def get_signed(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET ``path`` with a valid signature."""
    return await client.get(path, headers=sign(KEY, "GET", path, b""))


def now() -> int:
    """The current unix second."""
    return int(time.time())
