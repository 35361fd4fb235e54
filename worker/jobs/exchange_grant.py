"""Storing the grant a code exchange brought: the tokens exist nowhere else (the code is
spent), so a Postgres restart is waited out, and tokens that may not be stored (an unlink
came first, or another app's connection holds the grant) are owed a revocation instead."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog

from worker import errors
from worker.apps import App
from worker.bluebutton import oauth
from worker.constants import GRANT_SAVE_PATIENCE_SECONDS, OUTAGE_RETRY_BASE_SECONDS
from worker.jobs.exchange_rules import Code, Exchanged, ended, grant_from
from worker.outages import unavailable
from worker.runtime.services import Services
from worker.store import audit, connections, grants, revocations
from worker.store.db import Conn

log = structlog.get_logger(__name__)


async def save_grant(services: Services, code: Code, app: App, tokens: oauth.TokenSet) -> Exchanged:
    """Store the new grant (or, when it may not be stored, owe its tokens a revocation
    instead), waiting out a Postgres restart: the code is spent, so these tokens
    exist nowhere else."""
    deadline = time.monotonic() + GRANT_SAVE_PATIENCE_SECONDS
    while True:
        try:
            async with services.pool.acquire() as conn, conn.transaction():
                return await store_grant(conn, services, code, app, tokens)
        except Exception as exc:
            outage = unavailable(exc)
            if outage is None or time.monotonic() > deadline:
                raise
            log.warning("grant_save_deferred", reason=str(outage))
            await asyncio.sleep(OUTAGE_RETRY_BASE_SECONDS)


async def store_grant(
    conn: Conn, services: Services, code: Code, app: App, tokens: oauth.TokenSet
) -> Exchanged:
    connection_id = code.job.connection_id
    grant = grant_from(app, tokens, code.job.code, datetime.now(UTC))
    seen_at = datetime.fromtimestamp(code.arrival, UTC)
    try:
        if await grants.save_grant(conn, services.cipher, connection_id, grant, seen_at=seen_at):
            await audit.record(conn, connection_id, "authorized", scopes=sorted(tokens.scopes))
            return Exchanged(holds_tokens=True, status="pending")  # until its first sync
        # Unlinked while the code was exchanged: the unlink stands, and the new grant ends.
        end_grant, event = True, "grant_dropped_after_unlink"
    except errors.GrantConflict as exc:
        # Another app's (or person's) live connection is never moved (nothing was written):
        # these tokens are revoked, not their grant, which other connections may share.
        end_grant, event = False, "grant_refused"
        log.warning("grant_refused", reason=str(exc))
    await revocations.owe(
        conn,
        connection_id,
        revocations.seal(services.cipher, connection_id, tokens.access_token, tokens.refresh_token),
        end_grant=end_grant,
        app=app.name,
        client_id=app.client_id,
        patient_id=tokens.patient_id,
    )
    await audit.record(conn, connection_id, event)
    if end_grant:
        return ended("revoked")
    current = await connections.get(conn, connection_id)  # another app's, left as it was
    return ended(current.status if current else "unknown")
