"""What every job needs, opened once per worker process and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg
from redis.asyncio import Redis

from worker.apps import DEFAULT_APP, App, default_app, issued_by
from worker.bluebutton.app_clients import AppClients, BlueButtonClients
from worker.bluebutton.client import BlueButtonClient
from worker.constants import BUDGET_WINDOW_SECONDS
from worker.crypto import TokenCipher, cipher_for, uncovered
from worker.errors import ConfigError
from worker.outages import open_redis
from worker.runtime.lanes import INTERACTIVE, Lane
from worker.settings import Settings
from worker.store import apps
from worker.store.connections import Connection
from worker.store.db import create_pool
from worker.store.keys import stored_key_ids


@dataclass(frozen=True)
class Services:
    """The long-lived clients a job uses: Postgres, Redis, BB2 per app, the token cipher."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    clients: BlueButtonClients
    cipher: TokenCipher
    lane: Lane = INTERACTIVE

    def in_lane(self, lane: Lane) -> Services:
        """The same services, whose BB2 requests take their slots at ``lane``'s priority."""
        return replace(self, lane=lane)

    async def app(self, name: str, client_id: str | None = None) -> App:
        """The app ``name`` (its current client, or the one with ``client_id``), read afresh
        so that a rotated secret applies at once; AppUnavailable when it cannot serve."""
        if name == DEFAULT_APP:
            return issued_by(default_app(self.settings), client_id)
        async with self.pool.acquire() as conn:
            return await apps.get(conn, self.cipher, name, client_id)

    async def app_of(self, connection: Connection) -> App:
        """The app and client that issued the connection's tokens."""
        return await self.app(connection.app, connection.client_id)

    async def bluebutton(self, app: App) -> BlueButtonClient:
        """The BB2 client of ``app`` in this lane."""
        return await self.clients.client(app, self.lane.priority)


async def _check_keys_cover(pool: asyncpg.Pool, cipher: TokenCipher) -> None:
    async with pool.acquire() as conn:
        problem = uncovered(await stored_key_ids(conn), cipher)
    if problem is not None:
        raise ConfigError(problem)


async def open_services(settings: Settings, *, concurrency: int) -> Services:
    """Validate the encryption key, then connect to everything a job needs; ConfigError
    when a stored value is sealed under a key this replica lacks (worker.crypto)."""
    cipher = cipher_for(settings)
    pool = await create_pool(settings.database_url, max_size=concurrency + 2)
    try:
        await _check_keys_cover(pool, cipher)
    except BaseException:
        await pool.close()
        raise
    redis = open_redis(settings.redis_url)
    clients = AppClients(
        redis,
        timeout=settings.bb_http_timeout,
        max_connections=concurrency,
        burst=settings.bb_rate_burst,
        window=BUDGET_WINDOW_SECONDS * (1 + settings.bb_rate_margin),
    )
    return Services(settings=settings, pool=pool, redis=redis, clients=clients, cipher=cipher)


async def close_services(services: Services) -> None:
    """Close every client opened by :func:`open_services`."""
    await services.clients.aclose()
    await services.pool.close()
    await services.redis.aclose()
