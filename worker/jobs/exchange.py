"""The code exchange: the most urgent request in the system.

An authorization code lives 60 s at CMS from the beneficiary's consent (FACTS.md,
Authorization; BB2's ``apps/pkce/oauth2_validators.py`` sets a grant's ``expires`` from
django-oauth-toolkit's ``AUTHORIZATION_CODE_EXPIRE_SECONDS``, whose default of 60 its
``OAUTH2_PROVIDER`` settings keep), is single use, and is lost for good when not exchanged
in time. So the exchange is its own job (``exchange``, on
its own queue with worker slots reserved on every replica and a 5 s lease), its token
request takes the app's next budget slot ahead of every other request, and the first sync
follows as a job of its own (:mod:`worker.jobs.first_sync`). Its pure decisions live in
:mod:`worker.jobs.exchange_rules`, the storing of the grant in :mod:`worker.jobs.exchange_grant`.

The code's age counts from its event's arrival (``received_at``, or the job's enqueue
time). A code older than ``BB_CODE_LIFETIME`` when its slot comes is not sent, and the
connection ends in ``error`` saying so. Before the request leaves, the code's row in
``code_exchanges`` is marked started: a re-run (the replica died, or its lease lapsed on a
busy machine) that finds the mark, and whose code BB2 then refuses, records the exchange as
lost in flight. A refusal never undoes a success: a connection already holding this code's
tokens stays as it is.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import structlog
from arq import Retry

from worker import errors, metrics
from worker.apps import App
from worker.bluebutton import oauth
from worker.errors import Decision
from worker.events import connection as connection_events
from worker.jobs import backlog
from worker.jobs.exchange_grant import save_grant
from worker.jobs.exchange_rules import (
    EXPIRED,
    Code,
    Exchanged,
    arrival_of,
    ended,
    refusal_reason,
    retry_delay,
)
from worker.jobs.payloads import (
    ConnectJob,
    ExchangeJob,
    FirstSyncJob,
    code_fingerprint,
    parse_payload,
)
from worker.jobs.queue import enqueue
from worker.runtime import lanes
from worker.runtime.context import JobContext
from worker.runtime.failures import Handler, on_failure
from worker.runtime.job_retry import Attempt
from worker.runtime.services import Services
from worker.store import audit, connections, exchanges
from worker.sync.revocation import settle_owed_for_now

log = structlog.get_logger(__name__)


async def _end(
    services: Services,
    code: Code,
    outcome: exchanges.Outcome,
    reason: str,
    event: str,
    error: errors.IngestError | None = None,
) -> Exchanged:
    """Record a code exchange that ended without tokens (the connection goes to ``error``,
    unless it already holds this code's tokens or was unlinked), and its event (``error``:
    what failed)."""
    cid = code.job.connection_id
    async with services.pool.acquire() as conn, conn.transaction():
        failed = await connections.fail_exchange(conn, cid, code.fingerprint, reason)
        ended_before = await exchanges.finish(conn, cid, code.fingerprint, outcome, code.age())
        if failed:
            await audit.record(conn, cid, event, outcome=outcome)
        if failed and ended_before is None:  # a redelivered run's end is no news
            await connection_events.exchange_failed(conn, code.job.app, cid, outcome, error)
        # Left as it was (it holds this code's tokens, or was unlinked): its status says so.
        current = None if failed else await connections.get(conn, cid)
    metrics.CODE_EXCHANGES.labels(code.job.app, outcome).inc()
    if outcome == "expired":
        metrics.CODES_EXPIRED.labels(code.job.app).inc()
    log.warning("code_exchange_failed", outcome=outcome, reason=reason, changed=failed)
    if failed:
        return ended("error")
    holds = current is not None and current.code_sha256 == code.fingerprint and current.has_tokens
    return Exchanged(holds_tokens=holds, status=current.status if current else "unknown")


async def _open(services: Services, code: Code) -> exchanges.Exchange | Exchanged:
    """The code's row (and the connection's, ``pending`` if new), or what the exchange left
    when there is nothing to send (the reason is logged). ``started_at`` is set if a run had
    sent it."""
    job = code.job
    received = datetime.fromtimestamp(code.arrival, UTC)
    async with services.pool.acquire() as conn, conn.transaction():
        connection = await connections.create_pending(conn, job.connection_id, job.app)
        row = await exchanges.note(conn, code.fingerprint, job.connection_id, job.app, received)
        if connection.status == "revoked" and received < connection.status_changed_at:
            # An event from before the unlink, processed after it: the latest word was unlink.
            log.info("connect_older_than_unlink")
            return ended(connection.status)
        if row.outcome == "exchanged":
            # A duplicate run after a success whose tokens are gone since (an unlink): the
            # code is spent for sure.
            log.info("code_already_spent")
            return ended(connection.status)
    return row


async def _mark_started(services: Services, code: Code) -> None:
    async with services.pool.acquire() as conn:
        await exchanges.mark_started(conn, code.job.connection_id, code.fingerprint)


async def _already_exchanged(services: Services, code: Code) -> Exchanged | None:
    """The connection, when it holds this code's tokens already (a redelivered job)."""
    async with services.pool.acquire() as conn:
        connection = await connections.get(conn, code.job.connection_id)
    if (
        connection is not None
        and connection.code_sha256 == code.fingerprint
        and connection.has_tokens
    ):
        return Exchanged(holds_tokens=True, status=connection.status)
    return None


async def _send(services: Services, code: Code, app: App) -> oauth.TokenSet:
    job = code.job
    return await oauth.exchange_code(
        await services.bluebutton(app),
        app.credentials,
        code=job.code,
        code_verifier=job.code_verifier,
        redirect_uri=job.redirect_uri,
        send_by=code.arrival + code.lifetime,
    )


def _exchange_failures(
    services: Services, code: Code, sent_before: bool, attempt: Attempt
) -> dict[Decision, Handler[Exchanged]]:
    """What an exchange does per decision (worker.errors draws the tree)."""

    async def expired(_: errors.IngestError) -> Exchanged:
        return await _end(services, code, "expired", EXPIRED, "code_expired")

    async def failed(exc: errors.IngestError) -> Exchanged:
        if isinstance(exc, errors.AuthorizationFailed):
            outcome: exchanges.Outcome = "lost_in_flight" if sent_before else "refused"
            reason = refusal_reason(exc, sent_before)
            return await _end(services, code, outcome, reason, "authorization_failed", exc)
        # A client CMS rejects, an answer we cannot trust, an app that cannot serve (or
        # whose secret cannot be read), a paused app: a code lives 60 s, it cannot wait.
        return await _end(services, code, "failed", str(exc), "authorization_failed", exc)

    async def retry_later(exc: errors.IngestError) -> Exchanged:
        assert isinstance(exc, errors.RetryableError)
        delay = retry_delay(exc.retry_after, attempt.job_try, code.life_left())
        if delay is None and attempt.last:
            return await _end(services, code, "failed", str(exc), "authorization_failed", exc)
        if delay is None:
            return await _end(services, code, "expired", f"{EXPIRED} ({exc})", "code_expired")
        log.warning("code_exchange_deferred", reason=str(exc), defer=round(delay, 2))
        raise Retry(defer=delay) from exc

    return {
        Decision.CODE_EXPIRED: expired,
        Decision.GIVE_UP: failed,
        Decision.APP_PAUSED: failed,
        Decision.RETRY_LATER: retry_later,
    }


async def _exchange(services: Services, code: Code, attempt: Attempt) -> Exchanged:
    """Exchange the code unless a run already did, and say what it left. Raises Retry when
    BB2 could not answer and the code has life left."""
    if done := await _already_exchanged(services, code):
        log.info("code_already_exchanged")  # a redelivered job: the code is spent
        return done
    row = await _open(services, code)
    if isinstance(row, Exchanged):
        return row
    if code.age() > code.lifetime:
        return await _end(services, code, "expired", EXPIRED, "code_expired")
    sent_before = row.started_at is not None
    if not sent_before:
        await _mark_started(services, code)
    try:
        # The app named by the job: its client issued the code, whatever app served the
        # connection before (a re-consent may come through another organisation's app).
        app = await services.app(code.job.app)
        tokens = await _send(services, code, app)
    except errors.IngestError as exc:
        return await on_failure(exc, _exchange_failures(services, code, sent_before, attempt))
    metrics.CODE_AGE_AT_EXCHANGE.labels(code.job.app).observe(code.age())
    return await _keep(services, code, app, tokens)


async def _keep(services: Services, code: Code, app: App, tokens: oauth.TokenSet) -> Exchanged:
    """Store the tokens (or, if they may not be stored, owe their revocation)."""
    kept = await save_grant(services, code, app, tokens)
    async with services.pool.acquire() as conn:
        await exchanges.finish(
            conn, code.job.connection_id, code.fingerprint, "exchanged", code.age()
        )
    metrics.CODE_EXCHANGES.labels(code.job.app, "exchanged").inc()
    return kept


async def exchange_step(services: Services, job: ConnectJob, ctx: JobContext) -> Exchanged:
    """Exchange ``job``'s code through the urgent lane of the budget and say what it left
    (a first sync follows when the connection holds its tokens). Shared by the
    ``exchange`` job and the ``connect`` job of the contract."""
    received_at = job.received_at if isinstance(job, ExchangeJob) else None
    code = Code(
        job=job,
        fingerprint=code_fingerprint(job.code),
        arrival=arrival_of(received_at, ctx.get("enqueue_time"), time.time()),
        lifetime=services.settings.bb_code_lifetime,
    )
    step = await _exchange(services.in_lane(lanes.EXCHANGE), code, Attempt.of(ctx))
    await backlog.leave(services.redis, job.app, job.job_id())
    return step


async def settle_after_exchange(services: Services, connection_id: str) -> None:
    """Revoke what an exchange left owed (tokens a relink replaced, a grant dropped after an
    unlink, tokens refused for another app's connection) in the caller's lane, never in
    the urgent one, which is for codes. A failure is recorded and stays owed."""
    await settle_owed_for_now(services, connection_id)


async def exchange(ctx: JobContext, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """arq job ``exchange(connection_id, code, code_verifier, redirect_uri, app,
    received_at)``: the code exchange, then the first sync queued as a job of its own."""
    job = parse_payload(ExchangeJob, args, kwargs)
    services: Services = ctx["services"]
    with structlog.contextvars.bound_contextvars(
        job="exchange", connection_id=job.connection_id, app=job.app
    ):
        exchanged = await exchange_step(services, job, ctx)
        if exchanged.holds_tokens:
            # The first sync settles what the relink left owed, in its own lane.
            await enqueue(ctx["redis"], FirstSyncJob(connection_id=job.connection_id))
            return {"status": "exchanged"}
        # The urgent priority is for codes: what is owed is revoked at interactive priority.
        await settle_after_exchange(services.in_lane(lanes.INTERACTIVE), job.connection_id)
        return {"status": exchanged.status}
