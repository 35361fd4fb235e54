"""What every job needs, opened once per worker process and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg
import httpx
from redis.asyncio import Redis

from worker.bluebutton.budget import RequestBudget
from worker.bluebutton.client import BlueButtonClient, build_http_client
from worker.bluebutton.oauth import ClientCredentials
from worker.constants import BUDGET_WINDOW_SECONDS
from worker.crypto import TokenCipher
from worker.outages import open_redis
from worker.settings import Settings
from worker.store.db import create_pool


@dataclass(frozen=True)
class Services:
    """The long-lived clients a job uses: Postgres, Redis, BB2, and the token cipher."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    http: httpx.AsyncClient
    bluebutton: BlueButtonClient
    bulk_bluebutton: BlueButtonClient
    cipher: TokenCipher
    credentials: ClientCredentials

    def bulk_lane(self) -> Services:
        """The same services for bulk work, whose requests yield to interactive ones."""
        return replace(self, bluebutton=self.bulk_bluebutton)


async def open_services(settings: Settings, *, concurrency: int) -> Services:
    """Validate credentials and keys, then connect to everything a job needs."""
    client_id, client_secret = settings.client_credentials()
    cipher = TokenCipher.from_setting(settings.token_encryption_key.get_secret_value())
    redis = open_redis(settings.redis_url)
    http = build_http_client(
        settings.bb_base_url, timeout=settings.bb_http_timeout, max_connections=concurrency
    )
    pool = await create_pool(settings.database_url, max_size=concurrency + 2)
    budget = RequestBudget(
        redis,
        client_id,
        settings.bb_rate_limit,
        burst=settings.bb_rate_burst,
        window=BUDGET_WINDOW_SECONDS * (1 + settings.bb_rate_margin),
    )
    return Services(
        settings=settings,
        pool=pool,
        redis=redis,
        http=http,
        bluebutton=BlueButtonClient(http, budget),
        bulk_bluebutton=BlueButtonClient(http, budget.for_bulk(), lane="bulk"),
        cipher=cipher,
        credentials=ClientCredentials(client_id, client_secret),
    )


async def close_services(services: Services) -> None:
    """Close every client opened by :func:`open_services`."""
    await services.http.aclose()
    await services.pool.close()
    await services.redis.aclose()
