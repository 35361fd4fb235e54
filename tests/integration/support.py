"""Helpers for integration tests: beneficiaries authorized through the emulator, and the
resources the emulator serves, to compare with what the worker stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from worker.apps import DEFAULT_APP, App
from worker.bluebutton.app_clients import BlueButtonClients, Priority
from worker.bluebutton.budget import RequestBudget
from worker.bluebutton.client import BlueButtonClient, build_http_client
from worker.bluebutton.retry import RetryPolicy
from worker.emulator import resources as emulated
from worker.emulator.config import EmulatorConfig
from worker.emulator.data import Dataset
from worker.jobs.payloads import ConnectJob
from worker.local import CLIENT_ID, REDIRECT_URI, authorize_beneficiary
from worker.runtime.services import Services
from worker.store import unlinks
from worker.store.migrate import migrate

Key = tuple[str, str]
TABLES = (
    "apps, app_clients_retired, audit_log, code_exchanges, job_failures, pending_revocations,"
    " webhook_deliveries, webhook_endpoints,"
    " sync_runs, fhir_resources, connections, events, app_pauses"
)


async def reset_stores(database_url: str, redis_url: str) -> None:
    """Migrate and empty a database, and empty a Redis database."""
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    redis: Redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


def username(index: int) -> str:
    return f"BBUser{index:05d}"


def patient_id(index: int) -> str:
    return f"-{19990000000001 + index}"


async def authorized_job(
    base_url: str,
    index: int,
    *,
    connection_id: str | None = None,
    share_personal_info: bool = True,
    redirect_uri: str = REDIRECT_URI,
    client_id: str = CLIENT_ID,
    app: str = DEFAULT_APP,
) -> ConnectJob:
    """Walk BBUser<index> through authorize, login and consent (to ``client_id``); the
    connect job for ``app`` that follows."""
    async with httpx.AsyncClient() as http:
        return await authorize_beneficiary(
            http,
            base_url,
            username(index),
            f"PW{index:05d}!",
            connection_id or f"conn-{index}",
            share_personal_info=share_personal_info,
            redirect_uri=redirect_uri,
            client_id=client_id,
            app=app,
        )


def served_resources(
    config: EmulatorConfig, index: int, *, personal: bool = True
) -> dict[Key, Any]:
    """Every resource the emulator serves BBUser<index>, keyed by (type, id)."""
    dataset = Dataset(config)
    beneficiary = dataset.population.get(index)
    served: dict[Key, Any] = {
        ("ExplanationOfBenefit", claim.eob_id): emulated.eob(claim, beneficiary)
        for claim in dataset.claims(beneficiary)
    }
    for part in emulated.COVERAGE_PARTS:
        coverage = emulated.coverage(beneficiary, part)
        served["Coverage", coverage["id"]] = coverage
    if personal:
        served["Patient", beneficiary.patient_id] = emulated.patient(beneficiary)
    return served


async def stored_resources(pool: asyncpg.Pool, connection_id: str) -> dict[Key, Any]:
    """Every resource stored for the connection, keyed by (type, id)."""
    rows = await pool.fetch(
        "SELECT resource_type, resource_id, resource FROM fhir_resources WHERE connection_id = $1",
        connection_id,
    )
    return {(r["resource_type"], r["resource_id"]): r["resource"] for r in rows}


async def emulator_post(base_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()


async def pages_stored(pool: asyncpg.Pool, pages: int, sync: asyncio.Task[Any]) -> None:
    """Return once the running sync has stored ``pages`` pages (polling the database)."""
    while await pool.fetchval("SELECT coalesce(max(pages), 0) FROM sync_runs") < pages:
        assert not sync.done(), "the sync finished before it could be interrupted"
        await asyncio.sleep(0.01)


SLOW_SYNC = EmulatorConfig(beneficiaries=1, claims_per_beneficiary=300)


async def sync_in_flight(
    start: Callable[..., Awaitable[Any]], pool: asyncpg.Pool
) -> tuple[Any, Any, ConnectJob, asyncio.Task[dict[str, Any]]]:
    """A connect of BBUser00000 (300 claims at five requests a second: seconds, page by
    page) running as a task, once it has stored three pages; with its emulator, services
    and job."""
    from worker.jobs.connect import connect

    emulator, _, services = await start(SLOW_SYNC, BB_RATE_LIMIT="5")
    job = await authorized_job(emulator.base_url, 0)
    sync = asyncio.create_task(connect({"services": services, "job_try": 1}, **job.model_dump()))
    await pages_stored(pool, 3, sync)
    return emulator, services, job, sync


@dataclass(frozen=True)
class _FastRetries:
    """BB2 clients that try each request three times without noticeable sleeps, through
    ``http`` when given (else each app's own connection pool)."""

    redis: Redis
    clients: BlueButtonClients
    http: httpx.AsyncClient | None

    async def client(self, app: App, priority: Priority) -> BlueButtonClient:
        budget = RequestBudget(self.redis, app.client_id, 1000)
        policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
        http = self.http or (await self.clients.client(app, priority)).http
        return BlueButtonClient(http, budget, priority=priority, app=app.name, policy=policy)

    async def aclose(self) -> None:
        await self.clients.aclose()


def fast_retries(services: Services, http: httpx.AsyncClient | None = None) -> Services:
    """The same services, with each request tried three times without noticeable sleeps
    (through ``http`` when given)."""
    return replace(services, clients=_FastRetries(services.redis, services.clients, http))


@asynccontextmanager
async def bb2_unreachable(services: Services) -> AsyncIterator[Services]:
    """The same services, with BB2 behind a closed port."""
    dead = build_http_client("http://127.0.0.1:9", timeout=1, max_connections=1)
    try:
        yield fast_retries(services, dead)
    finally:
        await dead.aclose()


async def http_of(services: Services) -> httpx.AsyncClient:
    """The connection pool through which the services reach the default app's BB2."""
    return (await services.bluebutton(await services.app("default"))).http


async def run_cli(*argv: str) -> int:
    """``bbingest argv``; main() runs its own event loop, so it runs in a thread here."""
    from worker.cli import main

    return await asyncio.to_thread(main, list(argv))


async def unlink_rolled_back(pool: asyncpg.Pool, connection_id: str) -> None:
    """Unlink a connection inside a caller's transaction that then fails, and check the
    connection is still active: what the unlink wrote must roll back with the caller's."""

    async def unlink_then_fail(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            assert await unlinks.unlink(conn, connection_id) is not None
            raise RuntimeError("the caller's transaction fails after the unlink")

    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="after the unlink"):
            await unlink_then_fail(conn)
    assert (
        await pool.fetchval(
            "SELECT status FROM connections WHERE connection_id = $1", connection_id
        )
        == "active"
    )
