"""Real Postgres and Redis for integration tests (never mocks).

The tests use their own database (``bbingest_test``, created by ``make services``) and Redis
database 15, both emptied before each test, so they never touch demo data.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis

from worker.crypto import generate_key
from worker.store.db import create_pool
from worker.store.migrate import migrate

DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bbingest_test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TABLES = "audit_log, sync_runs, fhir_resources, connections"


@pytest.fixture(scope="session")
async def migrated() -> str:
    """Migrate the test database once per session; returns its DSN."""
    conn = await asyncpg.connect(DATABASE_URL)
    try:
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
