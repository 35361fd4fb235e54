"""Token refresh under concurrency, and grants that lapse: real emulator, Postgres, Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
from redis.asyncio import Redis

from tests.integration.conftest import Start, ctx
from tests.integration.support import authorized_job, emulator_post, patient_id, sync_in_flight
from worker.constants import BUDGET_COOLDOWN_KEY, REFRESH_LOCK_KEY
from worker.emulator.config import EmulatorConfig, RegisteredClient
from worker.jobs.connect import connect
from worker.local import emulator_stats
from worker.runtime.job_retry import Attempt
from worker.runtime.services import Services
from worker.store import revocations, unlinks
from worker.store import tokens as token_store
from worker.sync.outcome import load, run_sync
from worker.sync.refresh_lock import Held, RefreshLock
from worker.sync.tokens import ConnectionTokens


async def test_twenty_concurrent_users_of_an_expired_token_cause_one_refresh(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    await pool.execute("UPDATE connections SET access_expires_at = now() - interval '1 minute'")
    await emulator_stats(emulator.base_url, reset=True)
    app = await services.app("default")
    bluebutton = await services.bluebutton(app)
    holders = [ConnectionTokens(services, "conn-0", app, bluebutton) for _ in range(20)]
    tokens = await asyncio.gather(*(holder.current() for holder in holders))
    assert len(set(tokens)) == 1
    assert (await emulator_stats(emulator.base_url))["by_endpoint"] == {"token": 1}
    assert sum(holder.refreshes for holder in holders) == 1
    refreshed = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE event = 'tokens_refreshed'"
    )
    assert refreshed == 1
    assert await pool.fetchval("SELECT access_expires_at > now() FROM connections")


async def test_a_grant_lapsing_mid_sync_needs_reauth_without_retries(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, _, sync = await sync_in_flight(start, pool)
    await emulator_post(emulator.base_url, "/_emulator/grants/lapse", {"patient_id": patient_id(0)})
    assert await sync == {"status": "needs_reauth"}
    row = await pool.fetchrow("SELECT status, last_error FROM connections")
    assert row["status"] == "needs_reauth"
    assert "timed out" in row["last_error"]
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_status"]["401"] == 1  # one answer was enough: no retry storm
    run = await pool.fetchrow("SELECT status FROM sync_runs")
    assert run["status"] == "failed"


async def test_one_time_app_ends_in_needs_reauth_once_its_token_expires(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    config = EmulatorConfig(beneficiaries=1, clients=(RegisteredClient(grant_type="ONE_TIME"),))
    emulator, _, services = await start(config)
    job = await authorized_job(emulator.base_url, 0)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    past = datetime.now(UTC) - timedelta(minutes=1)
    await pool.execute("UPDATE connections SET access_expires_at = $1", past)
    await emulator_stats(emulator.base_url, reset=True)
    assert (await run_sync(services, await load(services, "conn-0"), "resync", Attempt(1))) == {
        "status": "needs_reauth"
    }
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_endpoint"] == {"token": 1}
    assert stats["by_status"] == {"403": 1}


async def _expired_connection(start: Start, pool: asyncpg.Pool) -> tuple[str, Services]:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    await pool.execute("UPDATE connections SET access_expires_at = now() - interval '1 minute'")
    await emulator_stats(emulator.base_url, reset=True)
    return emulator.base_url, services


async def test_a_refresh_waiting_out_a_429_cool_down_holds_no_pool_connection_nor_row_lock(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    base_url, services = await _expired_connection(start, pool)
    app = await services.app("default")
    bluebutton = await services.bluebutton(app)
    cooldown = BUDGET_COOLDOWN_KEY.format(client=app.client_id)
    await redis.set(cooldown, "1", px=1500)  # CMS said 429: every replica waits
    waiting = asyncio.Event()
    take_slot = bluebutton.take_slot

    async def noted_take_slot() -> None:
        waiting.set()
        await take_slot()

    bluebutton.take_slot = noted_take_slot  # type: ignore[method-assign]
    refresh = asyncio.create_task(ConnectionTokens(services, "conn-0", app, bluebutton).current())
    await waiting.wait()
    await asyncio.sleep(0.2)  # well inside the budget's wait loop
    assert not refresh.done()
    # Every pooled connection is free, and the row can be locked at once (pages can be written).
    assert services.pool.get_idle_size() == services.pool.get_size()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM connections FOR UPDATE NOWAIT")
    assert await refresh  # once the cool-down ends
    assert (await emulator_stats(base_url))["by_endpoint"] == {"token": 1}


class _LapsedLock(RefreshLock):
    """A lock whose holder believes it holds it while another takes it too (it lapsed),
    and that stops its holder right before it spends the refresh token."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis, "conn-0")
        self.about_to_spend = asyncio.Event()
        self.go = asyncio.Event()

    async def wait_free(self) -> None:
        return None

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[Held]:
        lock = self

        class _Stalled(Held):
            async def still_held(self) -> bool:
                lock.about_to_spend.set()
                await lock.go.wait()
                return True

        yield _Stalled(0, "lapsed", self._redis)


async def test_two_jobs_whose_lock_lapsed_cannot_both_spend_the_refresh_token(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    base_url, services = await _expired_connection(start, pool)
    app = await services.app("default")
    bluebutton = await services.bluebutton(app)
    lapsed = _LapsedLock(redis)
    first = ConnectionTokens(services, "conn-0", app, bluebutton, lock=lapsed)
    stalled = asyncio.create_task(first.current())
    await lapsed.about_to_spend.wait()  # it read the tokens and their generation, then stalled
    second = await ConnectionTokens(services, "conn-0", app, bluebutton).current()
    lapsed.go.set()
    # The stalled job spends the same refresh token: CMS refuses it (spent), the row's
    # generation has moved, and the job takes the tokens the other refresh stored.
    assert await stalled == second
    stats = await emulator_stats(base_url)
    assert stats["by_endpoint"] == {"token": 2}
    assert stats["by_status"] == {"200": 1, "400": 1}
    assert first.refreshes == 0
    row = await pool.fetchrow("SELECT status, token_generation FROM connections")
    assert row["status"] == "active"
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    refreshed = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE event = 'tokens_refreshed'"
    )
    assert refreshed == 1


async def test_a_lapsed_holder_is_fenced_and_cannot_release_the_next_holders_lock(
    redis: Redis,
) -> None:
    lock, key = RefreshLock(redis, "conn-x"), REFRESH_LOCK_KEY.format(connection="conn-x")
    first_hold = lock.hold()
    first = await first_hold.__aenter__()
    assert await first.still_held()
    await redis.delete(key)  # it lapsed (its replica froze past the lock's lifetime)
    second_hold = lock.hold()
    second = await second_hold.__aenter__()
    assert second.fence > first.fence
    assert not await first.still_held()
    await first_hold.__aexit__(None, None, None)
    assert await second.still_held()  # the lapsed holder's exit left the new holder's lock
    await second_hold.__aexit__(None, None, None)
    assert not await redis.exists(key)


async def test_tokens_a_refresh_cannot_store_are_owed_a_revocation_not_lost(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, services = await _expired_connection(start, pool)
    cipher = services.cipher
    async with pool.acquire() as conn:
        read = await token_store.load_tokens(conn, cipher, "conn-0")
        # A new grant stored meanwhile (a relink): the refreshed tokens of the old link are
        # revoked, the grant kept.
        await conn.execute("UPDATE connections SET token_generation = token_generation + 1")
        relinked = replace(read, access_token="access-1", refresh_token="refresh-1")
        async with conn.transaction():
            assert not await token_store.save_refreshed(
                conn, cipher, "conn-0", relinked, app="default", client_id="c"
            )
        # An unlink meanwhile: the refreshed tokens are the live ones, so they end the grant.
        await unlinks.unlink(conn, "conn-0")
        unlinked = replace(read, access_token="access-2", refresh_token="refresh-2")
        async with conn.transaction():
            assert not await token_store.save_refreshed(
                conn, cipher, "conn-0", unlinked, app="default", client_id="c"
            )
        owed = await revocations.owed_of(conn, cipher, "conn-0")
        hashes = await conn.fetch(
            "SELECT patient_sha256 FROM pending_revocations ORDER BY revocation_id"
        )
    assert [(row.refresh_token, row.end_grant) for row in owed] == [
        ("refresh-1", False),
        (read.refresh_token, True),  # the unlink's own row
        ("refresh-2", True),
    ]
    assert hashes[2]["patient_sha256"] == hashes[1]["patient_sha256"] is not None
