"""Real Postgres and Redis for integration tests (never mocks).

The tests use their own database (``bbingest_test``, created by ``make services``) and Redis
database 15, both emptied before each test, so they never touch demo data.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.integration.event_checks import emitted
from tests.integration.support import TABLES, authorized_job
from tests.integration.webhook_support import FAST_RETRIES, Dispatch
from worker.crypto import TokenCipher, generate_key
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import RunningEmulator, running_emulator
from worker.local import CLIENT_ID, CLIENT_SECRET
from worker.runtime.services import Services, close_services, open_services
from worker.settings import Settings, load_settings
from worker.store.db import create_pool
from worker.store.migrate import migrate

DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bbingest_test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
async def migrated() -> str:
    """Rebuild the test database's schema from this checkout's migrations; returns its DSN.

    Rebuilt, not merely migrated: a database last used by another branch may record
    migrations (or hold tables) this checkout does not have.
    """
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        await migrate(conn)
    finally:
        await conn.close()
    return DATABASE_URL


@pytest.fixture
async def pool(migrated: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on an empty, migrated database."""
    pool = await create_pool(migrated, max_size=12)
    await pool.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    yield pool
    try:
        # Every event the test emitted satisfies its JSON Schema (without waiting for another
        # database's long transaction: the tests that count events wait).
        await emitted(pool, wait=False)
    finally:
        await pool.close()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """An empty Redis database."""
    client: Redis = Redis.from_url(REDIS_URL)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def encryption_key() -> str:
    """A token encryption key for the session."""
    return generate_key()


def settings_for(base_url: str, key: str, **extra: str) -> Settings:
    """Worker settings pointing at an emulator and the test database and Redis."""
    return load_settings(
        {
            "BB_BASE_URL": base_url,
            "BB_CLIENT_ID": CLIENT_ID,
            "BB_CLIENT_SECRET": CLIENT_SECRET,
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "TOKEN_ENCRYPTION_KEY": key,
            "BB_RATE_LIMIT": "1000",
            "METRICS_PORT": "0",  # tests run replicas side by side; none needs a port
            **extra,
        }
    )


Stack = tuple[RunningEmulator, Settings, Services]
Start = Callable[..., Awaitable[Stack]]


def ctx(services: Services, job_try: int = 1) -> dict[str, Any]:
    """The context arq hands a job: its services, and which try this is."""
    return {"services": services, "job_try": job_try}


async def connected(start: Start, config: EmulatorConfig, **settings: str) -> Stack:
    """An emulator with ``config`` and worker services, BBUser00001 linked as ``conn-1``."""
    from worker.jobs.connect import connect

    stack = await start(config, **settings)
    emulator, _, services = stack
    job = await authorized_job(emulator.base_url, 1)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    return stack


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment a ``bbingest`` command needs to reach the test database and Redis."""
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("LOG_FORMAT", "console")
    monkeypatch.setenv("COLUMNS", "200")  # rich tables wide enough to read in full


@pytest.fixture
async def start(redis: Redis) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """Start an emulator with the given config, and worker services pointed at it, on an
    empty Redis: shared state an earlier test left (an app's pause flag, a budget) must
    not reach this one."""
    async with AsyncExitStack() as stack:

        async def _start(config: EmulatorConfig | None = None, **settings: str) -> Stack:
            emulator = await stack.enter_async_context(running_emulator(config or EmulatorConfig()))
            worker_settings = settings_for(emulator.base_url, generate_key(), **settings)
            services = await open_services(worker_settings, concurrency=4)
            stack.push_async_callback(close_services, services)
            return emulator, worker_settings, services

        yield _start


@pytest.fixture
async def dispatch(pool: asyncpg.Pool, encryption_key: str) -> AsyncIterator[Dispatch]:
    """Start a webhook dispatcher (another with each call: replicas) with fast retries and
    the given settings; stopped after the test."""
    from worker.crypto import cipher_for
    from worker.webhooks.dispatcher import dispatching

    async with AsyncExitStack() as stack:

        async def _start(**extra: str) -> tuple[Settings, TokenCipher]:
            options = {**FAST_RETRIES, **extra}
            settings = settings_for("http://127.0.0.1:9", encryption_key, **options)
            cipher = cipher_for(settings)
            await stack.enter_async_context(dispatching(settings, cipher))
            return settings, cipher

        yield _start
