"""Runs a sync for a job and turns its outcome into the connection's status.

Per decision (:func:`worker.decisions.decide`, through :mod:`worker.jobs.failures`): success
→ ``active``; a retryable failure → arq ``Retry`` with a delay
(the run keeps its cursor and resumes), or ``error`` once the tries are spent; re-consent
needed → ``needs_reauth``; anything permanent (an app that cannot serve the connection
included) → ``error``; the app inactive at CMS → nothing changes, the job comes back in
about a minute (``worker.pauses``). The reason goes into ``last_error`` and the sync run;
an unlink that wins the race, or a re-consent that replaced the grant the job started
from ("superseded"), ends the job quietly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from arq import Retry

from worker import errors, pauses
from worker.constants import APP_PAUSE_PROBE_SECONDS
from worker.errors import Decision
from worker.jobs import retrying
from worker.jobs.failures import Handler, on_failure
from worker.jobs.retrying import give_back_try
from worker.jobs.services import Services
from worker.store import audit, connections, sync_runs
from worker.store.connections import Status
from worker.sync.engine import SyncResult, sync_connection
from worker.sync.model import FULL, Kind, Plan

log = structlog.get_logger(__name__)


async def _fail(
    services: Services, connection: connections.Connection, status: Status, reason: str
) -> str:
    """Record the failure, unless a new authorization replaced the grant the job started
    from (a re-consent): then the job was only "superseded" and the new grant stands."""
    connection_id = connection.connection_id
    async with services.pool.acquire() as conn, conn.transaction():
        if not await connections.set_status(
            conn, connection_id, status, error=reason, grant=connection.code_sha256
        ):
            log.info("sync_superseded", reason=reason)
            return "superseded"
        await sync_runs.fail_running(conn, connection_id, reason)
        await audit.record(conn, connection_id, "sync_failed", status=status)
    log.warning("sync_failed", status=status, reason=reason)
    return status


async def _wait_for_app(
    services: Services, connection: connections.Connection, job_id: str | None
) -> Retry:
    """CMS made the app inactive: nothing about this connection changes; the job comes
    back in about a minute (a probe), its run and cursor kept, and the wait spends none of
    its tries (``job_id``: arq's, to give the try back)."""
    await pauses.mark_paused(services.redis, connection.app)
    if job_id is not None:
        await give_back_try(services.redis, job_id)
    return Retry(defer=APP_PAUSE_PROBE_SECONDS)


def _sync_failures(
    services: Services, connection: connections.Connection, job_try: int, job_id: str | None
) -> dict[Decision, Handler[dict[str, Any]]]:
    """What a sync job does per decision (worker.errors draws the tree)."""

    async def stopped_by_unlink(_: errors.IngestError) -> dict[str, Any]:
        log.info("sync_stopped_by_unlink")
        return {"status": "revoked"}

    async def wait_for_app(exc: errors.IngestError) -> dict[str, Any]:
        raise await _wait_for_app(services, connection, job_id) from exc

    async def retry_later(exc: errors.IngestError) -> dict[str, Any]:
        assert isinstance(exc, errors.RetryableError)
        if retry := retrying.retry_later(exc, job_try):
            log.warning("sync_deferred", reason=str(exc), job_try=job_try)
            raise retry from exc
        reason = f"gave up after {job_try} tries: {exc}"
        return {"status": await _fail(services, connection, "error", reason)}

    async def retry_soon(exc: errors.IngestError) -> dict[str, Any]:
        if isinstance(exc, errors.KeyMissing):
            # This replica lacks a key another one sealed with: not the connection's fault.
            raise retrying.key_missing_retry(exc, job_try) from exc
        raise exc  # an outage: the worker's outage retry brings the job back soon

    async def reconsent(exc: errors.IngestError) -> dict[str, Any]:
        return {"status": await _fail(services, connection, "needs_reauth", str(exc))}

    async def give_up(exc: errors.IngestError) -> dict[str, Any]:
        return {"status": await _fail(services, connection, "error", str(exc))}

    return {
        Decision.SUPERSEDED: stopped_by_unlink,
        Decision.APP_PAUSED: wait_for_app,
        Decision.RETRY_LATER: retry_later,
        Decision.RETRY_SOON: retry_soon,
        Decision.RECONSENT: reconsent,
        # A type already read again once, a code, a refusal: nothing more to try.
        Decision.RESTART_TYPE: give_up,
        Decision.CODE_EXPIRED: give_up,
        Decision.GIVE_UP: give_up,
    }


async def _succeed(services: Services, connection_id: str, result: SyncResult) -> int:
    async with services.pool.acquire() as conn, conn.transaction():
        await connections.lock_live(conn, connection_id, exclusive=result.plan.mode == "full")
        deleted = 0
        if result.plan.mode == "full":
            deleted = await sync_runs.delete_unseen(conn, result.run_id, connection_id)
        await sync_runs.finish(conn, connection_id, result.run_id)
        await connections.set_status(conn, connection_id, "active", synced_at=datetime.now(UTC))
        await audit.record(
            conn,
            connection_id,
            "synced",
            run_id=result.run_id,
            mode=result.plan.mode,
            deleted=deleted,
        )
    return deleted


async def load(services: Services, connection_id: str) -> connections.Connection:
    """The connection a job works on; UnknownConnection when there is none."""
    async with services.pool.acquire() as conn:
        connection = await connections.get(conn, connection_id)
    if connection is None:
        raise errors.UnknownConnection(f"connection {connection_id!r} does not exist")
    return connection


async def run_sync(
    services: Services,
    connection: connections.Connection,
    kind: Kind,
    *,
    job_try: int,
    job_id: str | None = None,
    plan: Plan = FULL,
) -> dict[str, Any]:
    """Sync the connection (as the job just read it) and record the outcome; raises
    ``Retry`` to come back later (``job_id``: arq's, so that waiting for an app CMS holds
    inactive spends no try)."""
    connection_id = connection.connection_id
    if connection.status == "revoked" or not connection.has_tokens:
        log.info("sync_not_needed", status=connection.status)
        return {"status": connection.status}
    try:
        app = await services.app_of(connection)
        await pauses.take_turn(services.redis, app.name)
        with structlog.contextvars.bound_contextvars(app=app.name):
            result = await sync_connection(services, connection, app, kind, plan)
            deleted = await _succeed(services, connection_id, result)
        await pauses.mark_active(services.redis, app.name)
    except errors.IngestError as exc:
        return await on_failure(exc, _sync_failures(services, connection, job_try, job_id))
    log.info(
        "sync_succeeded",
        mode=result.plan.mode,
        deleted=deleted,
        pages=result.pages,
        resources=result.resources,
        skipped=result.skipped_types,
        refreshes=result.refreshes,
    )
    return {"status": "active", "pages": result.pages, "resources": result.resources}
