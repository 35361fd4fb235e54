"""Unlink and relink against CMS's revocation rules, and CMS-side events that are not
consent events (FACTS.md, Authorization, Revocation, Errors), reduced to one or two people."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from arq import Retry
from arq.constants import retry_key_prefix
from redis.asyncio import Redis

from tests.emulator.sdk_support import sdk_authorization, sdk_client
from tests.integration.conftest import Start, connected, ctx
from tests.integration.support import (
    authorized_job,
    bb2_unreachable,
    emulator_post,
    http_of,
    patient_id,
    served_resources,
    stored_resources,
)
from worker.bluebutton import oauth
from worker.bluebutton.endpoints import REVOKE_GRANT_PATH
from worker.constants import APP_PAUSED_KEY, APP_PROBE_KEY, JOB_MAX_TRIES, MAX_GRANT_REFUSALS
from worker.emulator.config import EmulatorConfig
from worker.jobs.connect import connect
from worker.jobs.payloads import ConnectJob
from worker.jobs.resync import resync
from worker.jobs.unlink import unlink
from worker.local import CLIENT_ID, emulator_stats
from worker.runtime.job_retry import Attempt
from worker.store import connections, revocations
from worker.store import tokens as token_store
from worker.sync.outcome import run_sync
from worker.sync.revocation import settle_owed

CONFIG = EmulatorConfig(beneficiaries=2, claims_per_beneficiary=30)


async def grants_at_cms(base_url: str, index: int) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.get("/_emulator/grants", params={"patient_id": patient_id(index)})
        response.raise_for_status()
        grants: list[dict[str, Any]] = response.json()["grants"]
        return grants


async def revoked_audit(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT detail FROM audit_log WHERE event = 'revoked_at_cms' ORDER BY audit_id"
    )
    return [dict(row["detail"]) for row in rows]


async def test_an_unlink_leaves_cms_no_grant_and_no_live_token(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await emulator_stats(emulator.base_url, reset=True)
    assert await unlink(ctx(services), "conn-1") == {
        "status": "revoked",
        "cms": ["grant ended at CMS"],
    }
    assert await grants_at_cms(emulator.base_url, 1) == []
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    assert [a["grant_ended"] for a in await revoked_audit(pool)] == [True]


async def test_an_unlink_whose_first_revoke_answer_was_lost_ends_the_grant(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    lost: list[str] = []

    async def lose_first_revoke_answer(response: httpx.Response) -> None:
        if response.request.url.path == REVOKE_GRANT_PATH and not lost:
            lost.append("revoke")
            raise httpx.ReadError("answer lost on the way back")

    (await http_of(services)).event_hooks["response"].append(lose_first_revoke_answer)
    with pytest.raises(Retry):
        await unlink(ctx(services), "conn-1")  # CMS ended the grant; we never heard
    assert await pool.fetchval("SELECT attempts FROM pending_revocations") == 1
    # The retry's revoke meets 500 (token gone); the refresh says the grant is gone.
    result = await unlink(ctx(services, job_try=2), "conn-1")
    assert result["cms"][0].startswith("grant ")
    assert await grants_at_cms(emulator.base_url, 1) == []
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    assert [a["grant_ended"] for a in await revoked_audit(pool)] == [True]


async def test_unlinking_one_of_two_connections_of_a_person_leaves_the_other_working(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    second = await authorized_job(emulator.base_url, 1, connection_id="conn-b")
    assert (await connect(ctx(services), **second.model_dump()))["status"] == "active"
    await emulator_stats(emulator.base_url, reset=True)
    await unlink(ctx(services), "conn-1")
    stats = await emulator_stats(emulator.base_url)
    assert "revoke" not in stats["by_endpoint"]  # /v2/o/revoke/ would end conn-b's grant
    assert [a["grant_ended"] for a in await revoked_audit(pool)] == [False]
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    await pool.execute("UPDATE sync_runs SET started_at = started_at - interval '60 days'")
    assert (await resync(ctx(services), "conn-b"))["status"] == "active"
    assert await stored_resources(pool, "conn-b") == served_resources(CONFIG, 1)
    assert len(await grants_at_cms(emulator.base_url, 1)) == 1


async def test_a_relink_revokes_the_old_tokens_and_keeps_the_grant(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    again = await authorized_job(emulator.base_url, 1)
    await emulator_stats(emulator.base_url, reset=True)
    assert (await connect(ctx(services), **again.model_dump()))["status"] == "active"
    by_endpoint = (await emulator_stats(emulator.base_url))["by_endpoint"]
    assert by_endpoint.get("revoke_token") == 2  # access and refresh, each with its hint
    assert "revoke" not in by_endpoint
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    assert [a["how"] for a in await revoked_audit(pool)] == [
        "tokens revoked, grant kept: a relink's old tokens"
    ]
    grants = await grants_at_cms(emulator.base_url, 1)
    assert [g["live_refresh_tokens"] for g in grants] == [1]


async def test_owed_revocations_of_one_connection_are_all_kept(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await emulator_post(
        emulator.base_url, "/_emulator/apps/inactive", {"client_id": CLIENT_ID, "inactive": True}
    )
    await unlink(ctx(services), "conn-1")  # owed: CMS answers the inactive app 403
    async with pool.acquire() as conn:
        sealed = revocations.seal(services.cipher, "conn-1", None, "another-refresh-token")
        await revocations.owe(
            conn, "conn-1", sealed, end_grant=False, app="default", client_id=None, patient_id=None
        )
    owed = await pool.fetch(
        "SELECT end_grant, attempts FROM pending_revocations ORDER BY revocation_id"
    )
    assert [tuple(row) for row in owed] == [(True, 0), (False, 0)]
    await emulator_post(
        emulator.base_url, "/_emulator/apps/inactive", {"client_id": CLIENT_ID, "inactive": False}
    )
    await unlink(ctx(services, job_try=2), "conn-1")
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    assert await grants_at_cms(emulator.base_url, 1) == []


async def test_an_inactive_app_changes_no_status_and_no_row_and_resumes(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    before = await stored_resources(pool, "conn-1")
    await emulator_post(
        emulator.base_url, "/_emulator/apps/inactive", {"client_id": CLIENT_ID, "inactive": True}
    )
    await pool.execute("UPDATE sync_runs SET started_at = started_at - interval '60 days'")
    with pytest.raises(Retry):
        await resync(ctx(services), "conn-1")
    assert await redis.exists(APP_PAUSED_KEY.format(app="default"))
    row = await pool.fetchrow("SELECT status, refresh_token_enc FROM connections")
    assert row["status"] == "active"
    assert row["refresh_token_enc"] is not None
    assert await stored_resources(pool, "conn-1") == before
    # Within the probe period the other jobs of the app wait without asking BB2.
    await emulator_stats(emulator.base_url, reset=True)
    with pytest.raises(Retry):
        await resync(ctx(services, job_try=2), "conn-1")
    assert (await emulator_stats(emulator.base_url))["total"] == 0
    await emulator_post(
        emulator.base_url, "/_emulator/apps/inactive", {"client_id": CLIENT_ID, "inactive": False}
    )
    await redis.delete(APP_PROBE_KEY.format(app="default"))  # the minute has passed
    assert (await resync(ctx(services, job_try=3), "conn-1"))["status"] == "active"
    assert not await redis.exists(APP_PAUSED_KEY.format(app="default"))
    assert await stored_resources(pool, "conn-1") == served_resources(CONFIG, 1)


async def test_waiting_for_an_inactive_app_spends_no_try(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # However long CMS keeps the app inactive, a job keeps its tries for real failures: on
    # what would be its last try it waits again, and arq's count of that try is given back.
    emulator, _, services = await connected(start, CONFIG)
    await emulator_post(
        emulator.base_url, "/_emulator/apps/inactive", {"client_id": CLIENT_ID, "inactive": True}
    )
    await redis.set(retry_key_prefix + "resync:conn-1", JOB_MAX_TRIES)  # as arq counted it
    last_try = {**ctx(services, job_try=JOB_MAX_TRIES), "job_id": "resync:conn-1"}
    with pytest.raises(Retry):
        await resync(last_try, "conn-1")
    assert int(await redis.get(retry_key_prefix + "resync:conn-1")) == JOB_MAX_TRIES - 1
    assert await pool.fetchval("SELECT status FROM connections") == "active"


async def test_an_edges_html_403_during_a_full_pass_changes_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    before = await stored_resources(pool, "conn-1")
    await emulator_post(
        emulator.base_url, "/_emulator/edge/forbid", {"patient_id": patient_id(1), "seconds": 30}
    )
    await pool.execute("UPDATE sync_runs SET started_at = started_at - interval '60 days'")
    with pytest.raises(Retry):
        await resync(ctx(services), "conn-1")
    assert await pool.fetchval("SELECT status FROM connections") == "active"
    assert await stored_resources(pool, "conn-1") == before


async def test_cms_failing_mid_refresh_asks_reconsent_and_deletes_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    before = await stored_resources(pool, "conn-1")
    await emulator_post(emulator.base_url, "/_emulator/faults/refresh", {"status": 502, "count": 1})
    await pool.execute("UPDATE connections SET access_expires_at = now() - interval '1 hour'")
    assert (await resync(ctx(services), "conn-1"))["status"] == "needs_reauth"
    error = await pool.fetchval("SELECT last_error FROM connections")
    assert "mid-refresh" in error
    assert await stored_resources(pool, "conn-1") == before


async def test_a_saved_cursor_past_the_end_restarts_the_type(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    run_id = await pool.fetchval(
        # An incremental run stopped on EOB, resumed after claims were removed at CMS.
        """INSERT INTO sync_runs (connection_id, kind, mode, since, cursor_type, cursor_url)
           VALUES ('conn-1', 'resync', 'incremental', now() - interval '1 day',
                   'ExplanationOfBenefit', $1) RETURNING run_id""",
        f"{emulator.base_url}/v2/fhir/ExplanationOfBenefit/?patient={patient_id(1)}"
        "&_count=10&startIndex=500",
    )
    await emulator_stats(emulator.base_url, reset=True)
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"
    assert (await emulator_stats(emulator.base_url))["by_status"]["400"] == 1  # then restarted
    assert await pool.fetchval("SELECT status FROM sync_runs WHERE run_id = $1", run_id) == (
        "succeeded"
    )
    assert await stored_resources(pool, "conn-1") == served_resources(CONFIG, 1)


async def test_the_cms_sdks_pkce_pair_connects_end_to_end(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # cms-bluebutton-sdk's generate_auth_data: a padded challenge and a 44-character
    # verifier ending in '=', handed unchanged to the connect job (FACTS.md, Authorization).
    emulator, _, services = await start(CONFIG)
    authorization = await sdk_authorization(sdk_client(emulator.base_url), "BBUser00001")
    assert authorization.verifier.endswith("=")
    job = ConnectJob(
        connection_id="conn-sdk",
        code=authorization.code,
        code_verifier=authorization.verifier,
        redirect_uri=authorization.redirect_uri,
    )
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    assert await stored_resources(pool, "conn-sdk") == served_resources(CONFIG, 1)


async def test_a_job_of_the_replaced_grant_stops_quietly(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    async with pool.acquire() as conn:
        read_by_old_job = await connections.get(conn, "conn-1")
    assert read_by_old_job is not None
    again = await authorized_job(emulator.base_url, 1)  # re-consent: CMS deletes old tokens
    assert (await connect(ctx(services), **again.model_dump()))["status"] == "active"
    # The old job now fails (here: its app reads as unknown); the new grant is not judged.
    failing = dataclasses.replace(read_by_old_job, app="no-such-app")
    result = await run_sync(services, failing, "resync", Attempt(1))
    assert result == {"status": "superseded"}
    row = await pool.fetchrow("SELECT status, last_error FROM connections")
    assert (row["status"], row["last_error"]) == ("active", None)


async def test_without_an_access_token_the_refresh_token_dies_and_the_audit_says_so(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    async with pool.acquire() as conn:
        spent = (await token_store.load_tokens(conn, services.cipher, "conn-1")).refresh_token
    app = await services.app("default")
    await oauth.refresh(await services.bluebutton(app), app.credentials, spent)  # now spent
    # As an unlink leaves it: no tokens on the row, the grant alive at CMS.
    await pool.execute(
        "UPDATE connections SET status = 'revoked', access_token_enc = NULL,"
        " refresh_token_enc = NULL"
    )
    async with pool.acquire() as conn:
        await revocations.owe(
            conn,
            "conn-1",
            revocations.seal(services.cipher, "conn-1", None, spent),
            end_grant=True,
            app="default",
            client_id=CLIENT_ID,
            patient_id=patient_id(1),
        )
    await emulator_stats(emulator.base_url, reset=True)
    [how] = await settle_owed(services, "conn-1")
    assert how.startswith("grant could not be ended")
    assert (await emulator_stats(emulator.base_url))["by_endpoint"].get("revoke_token") == 1
    assert [a["grant_ended"] for a in await revoked_audit(pool)] == [False]
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0


async def test_a_revoke_that_keeps_failing_ends_in_revoked_tokens_not_a_loop(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    with respx.mock(base_url=emulator.base_url, assert_all_called=False) as cms:
        # CMS failing for real, every time: its handler500's JSON (hhs_oauth_server/urls.py).
        cms.post(REVOKE_GRANT_PATH).respond(500, json={"error": "Server Error (500)"})
        cms.route().pass_through()
        for job_try in range(1, MAX_GRANT_REFUSALS + 1):
            with pytest.raises(Retry):
                await unlink(ctx(services, job_try=job_try), "conn-1")
        refusals = await pool.fetchval("SELECT grant_refusals FROM pending_revocations")
        assert refusals == MAX_GRANT_REFUSALS  # each try refreshed, and the fresh token met 500
        result = await unlink(ctx(services, job_try=MAX_GRANT_REFUSALS + 1), "conn-1")
    assert result["cms"] == [f"grant could not be ended: CMS failed {MAX_GRANT_REFUSALS} times"]
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    grants = await grants_at_cms(emulator.base_url, 1)
    assert [(g["live_access_tokens"], g["live_refresh_tokens"]) for g in grants] == [(0, 0)]


async def test_an_edge_failing_the_revoke_spends_no_refresh_and_counts_no_refusal(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # A 500 that is not BB2's JSON came from an edge (FACTS.md, Errors): it says nothing
    # about the token, so the try is repeated later as it was, and ends the grant then.
    emulator, _, services = await connected(start, CONFIG)
    with respx.mock(base_url=emulator.base_url, assert_all_called=False) as edge:
        edge.post(REVOKE_GRANT_PATH).respond(500, text="<html>Internal Server Error</html>")
        edge.route().pass_through()
        await emulator_stats(emulator.base_url, reset=True)
        for job_try in range(1, MAX_GRANT_REFUSALS + 2):
            with pytest.raises(Retry):
                await unlink(ctx(services, job_try=job_try), "conn-1")
    assert "token" not in (await emulator_stats(emulator.base_url))["by_endpoint"]
    assert await pool.fetchval("SELECT grant_refusals FROM pending_revocations") == 0
    result = await unlink(ctx(services, job_try=MAX_GRANT_REFUSALS + 2), "conn-1")
    assert result["cms"] == ["grant ended at CMS"]
    assert await grants_at_cms(emulator.base_url, 1) == []


async def test_a_relink_before_cms_settled_the_unlink_keeps_the_new_grant(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    async with bb2_unreachable(services) as offline:
        with pytest.raises(Retry):
            await unlink(ctx(offline), "conn-1")  # the grant's end stays owed
    renewed = await authorized_job(emulator.base_url, 1)  # the person links again
    fresh = {**ctx(services), "enqueue_time": datetime.now(UTC)}
    assert (await connect(fresh, **renewed.model_dump()))["status"] == "active"
    # The owed unlink was settled by the connect: tokens only, the grant serves conn-1 again.
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    assert [a["grant_ended"] for a in await revoked_audit(pool)] == [False]
    await pool.execute("UPDATE sync_runs SET started_at = started_at - interval '60 days'")
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"
