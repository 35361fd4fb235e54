"""Runs a sync for a job and turns its outcome into the connection's status.

Per decision (:func:`worker.decisions.decide`, through :mod:`worker.runtime.failures`): success
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
from worker.events import connection as connection_events
from worker.runtime.failures import Handler, on_failure
from worker.runtime.job_retry import Attempt
from worker.runtime.services import Services
from worker.store import audit, connections, sync_runs
from worker.store.connections import Status
from worker.sync.engine import SyncResult, sync_connection
from worker.sync.model import FULL, Plan, RunKind

log = structlog.get_logger(__name__)


async def _fail(
    services: Services,
    connection: connections.Connection,
    status: Status,
    error: errors.IngestError,
    reason: str | None = None,
) -> str:
    """Record the failure (``reason``: its text, by default ``error``'s) and its event,
    unless a new authorization replaced the grant the job started from (a re-consent):
    then the job was only "superseded" and the new grant stands."""
    connection_id = connection.connection_id
    reason = str(error) if reason is None else reason
    async with services.pool.acquire() as conn, conn.transaction():
        before = await connections.status_locked(conn, connection_id)
        if not await connections.set_status(
            conn, connection_id, status, error=reason, grant=connection.code_sha256
        ):
            log.info("sync_superseded", reason=reason)
            return "superseded"
        await sync_runs.fail_running(conn, connection_id, reason)
        await audit.record(conn, connection_id, "sync_failed", status=status)
        if before != status:  # a connection in error failing again is no news
            await connection_events.sync_failed(conn, connection, status, error)
    log.warning("sync_failed", status=status, reason=reason)
    return status


async def _wait_for_app(
    services: Services, connection: connections.Connection, attempt: Attempt
) -> Retry:
    """CMS made the app inactive: nothing about this connection changes; the job comes
    back in about a minute (a probe), its run and cursor kept, and the wait spends none of
    its tries."""
    await pauses.mark_paused(services.redis, services.pool, connection.app)
    await attempt.give_back(services.redis)
    return Retry(defer=APP_PAUSE_PROBE_SECONDS)


def _sync_failures(
    services: Services, connection: connections.Connection, attempt: Attempt
) -> dict[Decision, Handler[dict[str, Any]]]:
    """What a sync job does per decision (worker.errors draws the tree)."""

    async def stopped_by_unlink(_: errors.IngestError) -> dict[str, Any]:
        log.info("sync_stopped_by_unlink")
        return {"status": "revoked"}

    async def wait_for_app(exc: errors.IngestError) -> dict[str, Any]:
        raise await _wait_for_app(services, connection, attempt) from exc

    async def retry_later(exc: errors.IngestError) -> dict[str, Any]:
        assert isinstance(exc, errors.RetryableError)
        if retry := attempt.retry_later(exc):
            log.warning("sync_deferred", reason=str(exc), job_try=attempt.job_try)
            raise retry from exc
        reason = f"gave up after {attempt.job_try} tries: {exc}"
        return {"status": await _fail(services, connection, "error", exc, reason)}

    async def retry_soon(exc: errors.IngestError) -> dict[str, Any]:
        if isinstance(exc, errors.KeyMissing):
            # This replica lacks a key another one sealed with: not the connection's fault.
            raise attempt.key_missing(exc) from exc
        raise exc  # an outage: the worker's outage retry brings the job back soon

    async def reconsent(exc: errors.IngestError) -> dict[str, Any]:
        return {"status": await _fail(services, connection, "needs_reauth", exc)}

    async def give_up(exc: errors.IngestError) -> dict[str, Any]:
        return {"status": await _fail(services, connection, "error", exc)}

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


async def _succeed(
    services: Services, connection: connections.Connection, result: SyncResult
) -> int | None:
    """Close the run, delete what a full pass did not see, mark the connection active and
    tell upstream; the number deleted. None when the run was no longer running (another
    pass of the connection sharing it closed it, or it failed meanwhile): that word stands,
    and this pass's partial view of what was seen must delete nothing."""
    connection_id = connection.connection_id
    async with services.pool.acquire() as conn, conn.transaction():
        before = await connections.lock_live(
            conn, connection_id, exclusive=result.plan.mode == "full"
        )
        changes = await sync_runs.finish(conn, connection_id, result.run_id)
        if changes is None:
            return None
        deleted = 0
        if result.plan.mode == "full":
            deleted = await sync_runs.delete_unseen(conn, result.run_id, connection_id)
        synced_at = datetime.now(UTC)
        await connections.set_status(conn, connection_id, "active", synced_at=synced_at)
        await connection_events.sync_succeeded(
            conn,
            connection_events.Synced(
                connection.app,
                connection_id,
                before,
                changes,
                result.plan.mode,
                deleted,
                synced_at,
            ),
        )
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
    kind: RunKind,
    attempt: Attempt,
    *,
    plan: Plan = FULL,
) -> dict[str, Any]:
    """Sync the connection (as the job just read it) and record the outcome; raises
    ``Retry`` to come back later."""
    if connection.status == "revoked" or not connection.has_tokens:
        log.info("sync_not_needed", status=connection.status)
        return {"status": connection.status}
    try:
        app = await services.app_of(connection)
        await pauses.take_turn(services.redis, app.name)
        with structlog.contextvars.bound_contextvars(app=app.name):
            result = await sync_connection(services, connection, app, kind, plan)
            deleted = await _succeed(services, connection, result)
        await pauses.mark_active(services.redis, services.pool, app.name)
    except errors.IngestError as exc:
        return await on_failure(exc, _sync_failures(services, connection, attempt))
    if deleted is None:
        # Another pass of the connection closed the run (a re-consent's sync resumed it):
        # its outcome is the connection's.
        log.info("sync_run_closed_by_another_pass")
        return {"status": (await load(services, connection.connection_id)).status}
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
