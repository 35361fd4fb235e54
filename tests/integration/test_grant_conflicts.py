"""A connect never moves a live connection to another app or beneficiary (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from tests.integration.conftest import Start, connected, ctx
from tests.integration.support import authorized_job
from tests.integration.test_cms_events import grants_at_cms
from worker.crypto import TokenCipher
from worker.emulator.config import EmulatorConfig
from worker.errors import GrantConflict
from worker.jobs.connect import connect
from worker.store import connections, grants, unlinks
from worker.store import tokens as token_store
from worker.store.grants import Grant
from worker.store.tokens import Tokens

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SCOPES = ("patient/Coverage.read",)


def grant(app: str, patient: str) -> Grant:
    pair = Tokens(f"access-{app}-{patient}", f"refresh-{app}-{patient}", T0)
    return Grant(app, "client", "sandbox", pair, patient, SCOPES, None, "h")


@pytest.mark.parametrize(
    ("second", "refused"),
    [
        (grant("acme", "-19990000000001"), None),
        (grant("beta", "-19990000000001"), "app 'acme'"),
        (grant("acme", "-19990000000002"), "another beneficiary"),
    ],
)
async def test_save_grant_refuses_to_move_a_live_connection(
    pool: asyncpg.Pool, encryption_key: str, second: Grant, refused: str | None
) -> None:
    cipher = TokenCipher.from_setting(encryption_key)
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c1", "acme")
        assert await grants.save_grant(
            conn, cipher, "c1", grant("acme", "-19990000000001"), seen_at=T0
        )
        if refused is None:
            assert await grants.save_grant(conn, cipher, "c1", second, seen_at=T0)
            return
        with pytest.raises(GrantConflict, match=refused):
            await grants.save_grant(conn, cipher, "c1", second, seen_at=T0)
        kept = await connections.get(conn, "c1")
        held = await token_store.load_tokens(conn, cipher, "c1")
    assert kept is not None
    assert (kept.app, kept.patient_id) == ("acme", "-19990000000001")
    assert held.refresh_token == "refresh-acme--19990000000001"


async def test_after_an_unlink_another_app_may_connect(
    pool: asyncpg.Pool, encryption_key: str
) -> None:
    cipher = TokenCipher.from_setting(encryption_key)
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c1", "acme")
        await grants.save_grant(conn, cipher, "c1", grant("acme", "-1"), seen_at=T0)
        await unlinks.unlink(conn, "c1")
        # The new connect started after the unlink: it is not the stale grant of a race.
        later = datetime.now(UTC)
        assert await grants.save_grant(conn, cipher, "c1", grant("beta", "-2"), seen_at=later)
        moved = await connections.get(conn, "c1")
    assert moved is not None
    assert (moved.app, moved.patient_id) == ("beta", "-2")


async def test_a_connect_job_for_another_beneficiary_changes_nothing(
    pool: asyncpg.Pool, start: Start
) -> None:
    emulator, _, services = await connected(start, EmulatorConfig(beneficiaries=3))
    before = await pool.fetchrow("SELECT * FROM connections WHERE connection_id = 'conn-1'")
    other = await authorized_job(emulator.base_url, 2, connection_id="conn-1")

    result = await connect(ctx(services), **other.model_dump())

    after = await pool.fetchrow("SELECT * FROM connections WHERE connection_id = 'conn-1'")
    assert before is not None
    assert after is not None
    assert dict(after) == dict(before)
    assert result == {"status": "active"}
    events = await pool.fetch("SELECT event FROM audit_log ORDER BY at")
    assert "grant_refused" in [row["event"] for row in events]
    # The tokens the refused code brought are revoked at CMS, not kept or forgotten.
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    [grant] = await grants_at_cms(emulator.base_url, 2)
    assert (grant["live_access_tokens"], grant["live_refresh_tokens"]) == (0, 0)
