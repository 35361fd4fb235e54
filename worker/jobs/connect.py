"""The ``connect`` job: exchange the code, store the grant, fetch everything."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from worker import errors
from worker.apps import App
from worker.bluebutton import oauth
from worker.constants import (
    GRANT_SAVE_PATIENCE_SECONDS,
    OUTAGE_RETRY_BASE_SECONDS,
)
from worker.jobs.outcome import load, run_sync
from worker.jobs.payloads import ConnectJob, code_fingerprint, parse_payload
from worker.jobs.retrying import retry_later
from worker.jobs.revocation import settle_owed
from worker.jobs.services import Services
from worker.outages import unavailable
from worker.store import audit, connections, revocations
from worker.store.connections import Grant, Tokens
from worker.store.db import Conn

log = structlog.get_logger(__name__)

# A grant without access_grant_expiration lapses 13 months after authorization.
_DEFAULT_GRANT_DAYS = 396


def grant_from(app: App, tokens: oauth.TokenSet, code: str, now: datetime) -> Grant:
    """The connection's new grant from a token response of ``app``'s client."""
    return Grant(
        app=app.name,
        client_id=app.client_id,
        environment=app.environment,
        tokens=Tokens(tokens.access_token, tokens.refresh_token, tokens.expires_at),
        patient_id=tokens.patient_id,
        scopes=tuple(sorted(tokens.scopes)),
        consent_expires_at=tokens.grant_expires_at or now + timedelta(days=_DEFAULT_GRANT_DAYS),
        code_sha256=code_fingerprint(code),
    )


def refusal_reason(error: errors.IngestError, job_try: int) -> str:
    """Why the code exchange failed, for ``last_error``. A code refused on a later try may
    have been spent by an earlier one that never stored its tokens (a replica killed, or an
    answer lost on the way back): only a new authorization helps then."""
    if isinstance(error, errors.AuthorizationFailed) and job_try > 1:
        return f"{error} (an earlier try may have spent the code: authorize again)"
    return str(error)


async def _authorize(
    services: Services, job: ConnectJob, enqueued_at: datetime | None, job_try: int
) -> bool:
    """Exchange the code unless this job already did; False when there is nothing to sync."""
    fingerprint = code_fingerprint(job.code)
    async with services.pool.acquire() as conn:
        connection = await connections.create_pending(conn, job.connection_id, job.app)
    if connection.status == "revoked" and (
        enqueued_at is None or enqueued_at < connection.status_changed_at
    ):
        # An event from before the unlink, processed after it: the latest word was unlink.
        log.info("connect_older_than_unlink")
        return False
    if connection.code_sha256 == fingerprint and connection.has_tokens:
        log.info("code_already_exchanged")  # a redelivered job: the code is spent
        return True
    try:
        # The app named by the job: its client issued the code, whatever app served the
        # connection before (a re-consent may come through another organisation's app).
        app = await services.app(job.app)
        tokens = await oauth.exchange_code(
            await services.bluebutton(app),
            app.credentials,
            code=job.code,
            code_verifier=job.code_verifier,
            redirect_uri=job.redirect_uri,
        )
    except (
        errors.AuthorizationFailed,
        errors.AppPaused,  # a code lives 60 s: it cannot wait for CMS to reactivate the app
        errors.ClientRejected,
        errors.ProtocolError,
        errors.AppUnavailable,
    ) as exc:
        reason = refusal_reason(exc, job_try)
        async with services.pool.acquire() as conn, conn.transaction():
            await connections.set_status(conn, job.connection_id, "error", error=reason)
            await audit.record(conn, job.connection_id, "authorization_failed")
        log.warning("authorization_failed", reason=reason)
        return False
    saved = await _save_grant(services, job, app, tokens, connection.status_changed_at)
    if not saved:
        # Unlinked while the code was exchanged: the unlink stands, and the new grant ends too.
        log.info("unlinked_during_exchange")
    # Owed now: the tokens a relink replaced, or the grant dropped after an unlink.
    with contextlib.suppress(errors.RetryableError):  # recorded: the tokens stay owed
        await settle_owed(services, job.connection_id)
    return saved


async def _save_grant(
    services: Services, job: ConnectJob, app: App, tokens: oauth.TokenSet, seen_at: datetime
) -> bool:
    """Store the new grant (False: the connection was unlinked after ``seen_at``, and the
    grant is owed a revocation instead), waiting out a Postgres restart: the code
    is spent, so these tokens exist nowhere else."""
    deadline = time.monotonic() + GRANT_SAVE_PATIENCE_SECONDS
    while True:
        try:
            async with services.pool.acquire() as conn, conn.transaction():
                return await _store_grant(conn, services, job, app, tokens, seen_at)
        except Exception as exc:
            outage = unavailable(exc)
            if outage is None or time.monotonic() > deadline:
                raise
            log.warning("grant_save_deferred", reason=str(outage))
            await asyncio.sleep(OUTAGE_RETRY_BASE_SECONDS)


async def _store_grant(
    conn: Conn,
    services: Services,
    job: ConnectJob,
    app: App,
    tokens: oauth.TokenSet,
    seen_at: datetime,
) -> bool:
    grant = grant_from(app, tokens, job.code, datetime.now(UTC))
    if await connections.save_grant(
        conn, services.cipher, job.connection_id, grant, seen_at=seen_at
    ):
        await audit.record(conn, job.connection_id, "authorized", scopes=sorted(tokens.scopes))
        return True
    sealed = revocations.seal(
        services.cipher, job.connection_id, tokens.access_token, tokens.refresh_token
    )
    await revocations.owe(
        conn,
        job.connection_id,
        sealed,
        end_grant=True,
        app=app.name,
        client_id=app.client_id,
        patient_id=tokens.patient_id,
    )
    await audit.record(conn, job.connection_id, "grant_dropped_after_unlink")
    return False


async def _authorize_or_retry(services: Services, job: ConnectJob, ctx: dict[str, Any]) -> bool:
    """:func:`_authorize`, coming back later when BB2 could not answer (the code may still
    be good: codes expire in minutes, so the first retries come within a minute)."""
    try:
        return await _authorize(services, job, ctx.get("enqueue_time"), ctx["job_try"])
    except errors.RetryableError as exc:
        if retry := retry_later(exc, ctx["job_try"]):
            raise retry from exc
        async with services.pool.acquire() as conn:
            await connections.set_status(conn, job.connection_id, "error", error=str(exc))
        return False


async def connect(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """arq job ``connect(connection_id, code, code_verifier, redirect_uri)``."""
    job = parse_payload(ConnectJob, args, kwargs)
    services: Services = ctx["services"]
    with structlog.contextvars.bound_contextvars(
        job="connect", connection_id=job.connection_id, app=job.app
    ):
        if not await _authorize_or_retry(services, job, ctx):
            async with services.pool.acquire() as conn:
                found = await connections.get(conn, job.connection_id)
            return {"status": found.status if found else "unknown"}
        connection = await load(services, job.connection_id)
        return await run_sync(services, connection, "connect", job_try=ctx["job_try"])
