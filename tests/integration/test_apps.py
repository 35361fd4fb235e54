"""Several Blue Button apps in one deployment, against the emulator: each connection is
served only with the client that issued its tokens, budgets are per app, and an app that
goes away fails its connections clearly."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import generate_latest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from tests.integration.conftest import Start, ctx
from tests.integration.support import authorized_job, served_resources, stored_resources
from worker import metrics
from worker.apps import App
from worker.bluebutton.budget import RequestBudget
from worker.constants import QUEUE_BULK
from worker.emulator.config import EmulatorConfig, RegisteredClient
from worker.emulator.server import RunningEmulator
from worker.jobs.connect import connect
from worker.jobs.nightly import nightly
from worker.jobs.queue import open_queue
from worker.jobs.resync import resync
from worker.jobs.unlink import unlink
from worker.local import emulator_stats
from worker.log import configure_logging
from worker.runtime.services import Services
from worker.store import apps

ACME = RegisteredClient(client_id="acme-client", client_secret="acme-secret", name="Acme Health")
TWO_CLIENTS = EmulatorConfig(
    beneficiaries=4, claims_per_beneficiary=60, clients=(RegisteredClient(), ACME)
)


def acme_app(base_url: str, client: RegisteredClient = ACME, **changes: Any) -> App:
    fields: dict[str, Any] = {
        "name": "acme",
        "environment": "sandbox",
        "base_url": base_url,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "rate_limit": 1000,
    }
    return App(**{**fields, **changes})


async def register(services: Services, app: App) -> None:
    async with services.pool.acquire() as conn:
        await apps.add(conn, services.cipher, app)


async def replace(services: Services, app: App) -> None:
    """Register ``app`` in place of the app of its name, as ``bbingest apps update`` does."""
    async with services.pool.acquire() as conn:
        await apps.update(conn, services.cipher, app.name, lambda _: app)


async def connect_both(base_url: str, services: Services) -> None:
    """conn-0 through the default app, conn-1 through acme; both end active."""
    own = await authorized_job(base_url, 0)
    theirs = await authorized_job(base_url, 1, client_id=ACME.client_id, app="acme")
    assert (await connect(ctx(services), **own.model_dump()))["status"] == "active"
    assert (await connect(ctx(services), **theirs.model_dump()))["status"] == "active"


async def two_apps_connected(start: Start) -> tuple[RunningEmulator, Services]:
    """The emulator with two apps registered, and a connection through each (conn-0 through
    the default app, conn-1 through acme)."""
    emulator, _, services = await start(TWO_CLIENTS)
    await register(services, acme_app(emulator.base_url))
    await connect_both(emulator.base_url, services)
    return emulator, services


async def resync_after_expiry(
    pool: asyncpg.Pool, base_url: str, services: Services, connection_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Expire the connection's access token, resync it; its result and the requests BB2 saw."""
    await pool.execute(
        "UPDATE connections SET access_expires_at = now() - interval '1 minute',"
        " last_synced_at = NULL WHERE connection_id = $1",
        connection_id,
    )
    await emulator_stats(base_url, reset=True)
    result = await resync(ctx(services), connection_id=connection_id)
    return result, await emulator_stats(base_url)


async def test_each_connection_is_served_with_its_own_apps_client_only(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, services = await two_apps_connected(start)
    rows = await pool.fetch("SELECT connection_id, app, client_id FROM connections ORDER BY 1")
    assert [tuple(row) for row in rows] == [
        ("conn-0", "default", "emulator-client"),
        ("conn-1", "acme", "acme-client"),
    ]
    for connection_id, client_id in (("conn-1", "acme-client"), ("conn-0", "emulator-client")):
        # A refresh with another app's credentials is refused (invalid_grant), so an active
        # connection after it proves the right client; and every request carried it.
        result, stats = await resync_after_expiry(pool, emulator.base_url, services, connection_id)
        assert result["status"] == "active"
        assert stats["by_endpoint"]["token"] == 1
        assert set(stats["by_client"]) == {client_id}
    assert await stored_resources(pool, "conn-1") == served_resources(TWO_CLIENTS, 1)


async def test_a_changed_secret_of_one_app_leaves_the_other_apps_connections_alone(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, services = await two_apps_connected(start)
    await replace(services, acme_app(emulator.base_url, client_secret="not-the-secret"))
    acme, _ = await resync_after_expiry(pool, emulator.base_url, services, "conn-1")
    assert acme["status"] == "error"  # BB2 said invalid_client: a clear, recorded error
    error = await pool.fetchval("SELECT last_error FROM connections WHERE connection_id = 'conn-1'")
    assert error.startswith("token endpoint answered 401 invalid_client")
    assert "not-the-secret" not in error
    own, stats = await resync_after_expiry(pool, emulator.base_url, services, "conn-0")
    assert own["status"] == "active"
    assert set(stats["by_client"]) == {"emulator-client"}
    # The right secret back: acme's connection syncs again with its old tokens.
    await replace(services, acme_app(emulator.base_url))
    assert (await resync(ctx(services), connection_id="conn-1"))["status"] == "active"


async def test_a_connection_whose_app_was_removed_fails_clearly_and_unlinks_locally(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, services = await two_apps_connected(start)
    async with pool.acquire() as conn:
        assert await apps.live_connections(conn, "acme") == 1
        assert await apps.remove(conn, "acme")
    result, stats = await resync_after_expiry(pool, emulator.base_url, services, "conn-1")
    assert result == {"status": "error"}
    assert stats["total"] == 0  # nothing was sent with some other app's credentials
    error = await pool.fetchval("SELECT last_error FROM connections WHERE connection_id = 'conn-1'")
    assert error == "app 'acme' is not registered (bbingest apps list)"
    own, _ = await resync_after_expiry(pool, emulator.base_url, services, "conn-0")
    assert own["status"] == "active"
    # Unlinking still deletes everything here; the revocation at CMS stays owed.
    assert (await unlink(ctx(services), connection_id="conn-1"))["status"] == "revoked"
    assert (
        await pool.fetchval("SELECT count(*) FROM fhir_resources WHERE connection_id = 'conn-1'")
        == 0
    )
    owed = await pool.fetchrow("SELECT attempts, last_error FROM pending_revocations")
    assert owed["attempts"] == 1
    assert "not registered" in owed["last_error"]


async def test_a_connect_through_an_unknown_app_ends_in_a_clear_error(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(TWO_CLIENTS)
    job = await authorized_job(emulator.base_url, 1, client_id=ACME.client_id, app="nobody")
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "error"
    row = await pool.fetchrow("SELECT app, last_error, patient_id FROM connections")
    assert row["app"] == "nobody"
    assert row["last_error"] == "app 'nobody' is not registered (bbingest apps list)"
    assert row["patient_id"] is None
    assert (await emulator_stats(emulator.base_url))["by_endpoint"].get("token") is None


async def test_switching_an_app_to_production_serves_new_connections_only(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    sandbox, _, services = await start(TWO_CLIENTS)
    production_client = RegisteredClient(
        client_id="acme-prod", client_secret="acme-prod-secret", name="Acme Health"
    )
    production, _, _ = await start(
        EmulatorConfig(beneficiaries=4, claims_per_beneficiary=60, clients=(production_client,))
    )
    await register(services, acme_app(sandbox.base_url))
    early = await authorized_job(sandbox.base_url, 1, client_id=ACME.client_id, app="acme")
    assert (await connect(ctx(services), **early.model_dump()))["status"] == "active"
    await replace(
        services, acme_app(production.base_url, production_client, environment="production")
    )
    late = await authorized_job(
        production.base_url, 2, client_id="acme-prod", app="acme", connection_id="conn-late"
    )
    assert (await connect(ctx(services), **late.model_dump()))["status"] == "active"
    rows = await pool.fetch(
        "SELECT connection_id, client_id, environment FROM connections ORDER BY 1"
    )
    assert [tuple(row) for row in rows] == [
        ("conn-1", "acme-client", "sandbox"),
        ("conn-late", "acme-prod", "production"),
    ]
    # The early connection keeps the sandbox client that issued its tokens, and its host.
    result, stats = await resync_after_expiry(pool, sandbox.base_url, services, "conn-1")
    assert result["status"] == "active"
    assert set(stats["by_client"]) == {"acme-client"}
    result, stats = await resync_after_expiry(pool, production.base_url, services, "conn-late")
    assert result["status"] == "active"
    assert set(stats["by_client"]) == {"acme-prod"}


async def test_a_cool_down_of_one_app_does_not_slow_another(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(TWO_CLIENTS)
    default = await services.bluebutton(await services.app("default"))
    await register(services, acme_app(emulator.base_url))
    await RequestBudget(redis, ACME.client_id, 1000).pause(30)  # acme got a 429
    began = time.monotonic()
    answer = await default.request("GET", "/v2/fhir/metadata")
    assert answer.status_code == 200
    assert time.monotonic() - began < 5  # not the 30 s of acme's cool-down
    assert await redis.pttl("bbingest:budget:acme-client:cooldown") > 20_000
    assert await redis.pttl("bbingest:budget:emulator-client:cooldown") < 0


@pytest.mark.timeout(120)
async def test_two_apps_share_nothing_of_their_budgets(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # The emulator limits nobody here: what keeps each app within 4/s is its own budget.
    config = EmulatorConfig(
        beneficiaries=6, claims_per_beneficiary=150, clients=TWO_CLIENTS.clients
    )
    emulator, _, services = await start(config, BB_RATE_LIMIT="4", BB_RATE_MARGIN="0.1")
    await register(services, acme_app(emulator.base_url, rate_limit=4))
    jobs = [await authorized_job(emulator.base_url, i) for i in range(3)] + [
        await authorized_job(emulator.base_url, i, client_id=ACME.client_id, app="acme")
        for i in range(3, 6)
    ]
    await emulator_stats(emulator.base_url, reset=True)
    results = await asyncio.gather(*(connect(ctx(services), **job.model_dump()) for job in jobs))
    assert [r["status"] for r in results] == ["active"] * 6
    stats = await emulator_stats(emulator.base_url)
    peaks = stats["max_in_window_by_client"]
    assert peaks["emulator-client"] <= 4  # each app within its own budget
    assert peaks["acme-client"] <= 4
    assert stats["max_in_window"] > 4  # together above either: the budgets are separate


async def test_the_nightly_plan_gives_each_app_its_own_budget(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # A share of 7 s a day: 2 resyncs at the default app's 1 request/s, 4 at acme's 2.
    emulator, settings, services = await start(
        TWO_CLIENTS, BB_RATE_LIMIT="1", RESYNC_DAILY_SHARE=str(7.0 / 86_400)
    )
    await register(services, acme_app(emulator.base_url, rate_limit=2))
    old = datetime.now(UTC) - timedelta(days=8)
    rows = [
        (f"{app}-{i}", app, old - timedelta(hours=i))
        for app in ("default", "acme", "ghost")
        for i in range(5)
    ]
    await pool.executemany(
        "INSERT INTO connections (connection_id, app, status, last_synced_at)"
        " VALUES ($1, $2, 'active', $3)",
        rows,
    )
    queue = await open_queue(settings.redis_url)
    try:
        with capture_logs() as logs:
            result = await nightly({"services": services, "redis": queue})
    finally:
        await queue.aclose()
    assert result == {"resyncs": 6, "purged": 0, "revocations": 0, "due": 15}
    queued = sorted(j.decode() for j in await redis.zrange(QUEUE_BULK, 0, -1))
    oldest = [f"acme-{i}" for i in (1, 2, 3, 4)] + ["default-3", "default-4"]
    assert queued == sorted(f"resync:{c}" for c in oldest)
    skipped = [entry for entry in logs if entry["event"] == "nightly_app_unavailable"]
    assert skipped == [
        {"event": "nightly_app_unavailable", "app": "ghost", "connections_due": 5,
         "log_level": "warning"}
    ]  # fmt: skip


async def test_logs_and_metrics_name_the_app_never_its_secret(
    pool: asyncpg.Pool, redis: Redis, start: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="json", level="debug")
    emulator, _, services = await start(TWO_CLIENTS)
    await register(services, acme_app(emulator.base_url))
    job = await authorized_job(emulator.base_url, 1, client_id=ACME.client_id, app="acme")
    sent_before = metrics.BB2_REQUESTS.labels("acme", "token", "200")._value.get()
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    assert metrics.BB2_REQUESTS.labels("acme", "token", "200")._value.get() == sent_before + 1
    # JSON or console lines, whichever format an earlier test left cached in the loggers.
    lines = capsys.readouterr().err.splitlines()
    [done] = [line for line in lines if "sync_succeeded" in line]
    assert re.search(r'\bapp(=|": ")acme\b', done)
    assert not any(ACME.client_secret in line for line in lines)
    exposition = generate_latest().decode()
    assert 'app="acme"' in exposition
    assert ACME.client_secret not in exposition
    assert ACME.client_id not in exposition
