"""The asyncpg pool, with orjson as the binary JSONB codec."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

# What store functions take: a plain connection, or one borrowed from the pool.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy

# JSONB's binary format is a version byte followed by the JSON text.
_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    """Register the JSONB codec; binary, so that COPY works too."""
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",
    )


async def create_pool(dsn: str, *, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool on ``dsn``; every connection gets the JSONB codec."""
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, init=init_connection, command_timeout=60
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection with the JSONB codec, closed on exit (for commands, not jobs)."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        yield conn
    finally:
        await conn.close()
