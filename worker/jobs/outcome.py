"""Runs a sync for a job and turns its outcome into the connection's status.

The decision table: success → ``active``; a retryable failure → arq ``Retry`` with a delay
(the run keeps its cursor and resumes), or ``error`` once the tries are spent; re-consent
needed → ``needs_reauth``; anything permanent (an app that cannot serve the connection
included) → ``error``. The reason goes into ``last_error`` and the sync run; an unlink
that wins the race ends the job quietly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from worker import errors
from worker.crypto import DecryptionError, KeyMissing
from worker.jobs.retrying import key_missing_retry, retry_later
from worker.jobs.services import Services
from worker.jobs.sync import SyncResult, sync_connection
from worker.store import audit, connections, sync_runs
from worker.store.connections import ConnectionRevoked, Status
from worker.store.sync_runs import FULL, Kind, Plan

log = structlog.get_logger(__name__)


async def _fail(services: Services, connection_id: str, status: Status, reason: str) -> None:
    async with services.pool.acquire() as conn, conn.transaction():
        await sync_runs.fail_running(conn, connection_id, reason)
        await connections.set_status(conn, connection_id, status, error=reason)
        await audit.record(conn, connection_id, "sync_failed", status=status)
    log.warning("sync_failed", status=status, reason=reason)


async def _succeed(services: Services, connection_id: str, result: SyncResult) -> int:
    async with services.pool.acquire() as conn, conn.transaction():
        await connections.lock_live(conn, connection_id)
        deleted = 0
        if result.plan.mode == "full":
            deleted = await sync_runs.delete_unseen(conn, result.run_id, connection_id)
        await sync_runs.finish(conn, result.run_id)
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
    plan: Plan = FULL,
) -> dict[str, Any]:
    """Sync the connection (as the job just read it) and record the outcome; raises
    ``Retry`` to come back later."""
    connection_id = connection.connection_id
    if connection.status == "revoked" or not connection.has_tokens:
        log.info("sync_not_needed", status=connection.status)
        return {"status": connection.status}
    try:
        app = await services.app_of(connection)
        with structlog.contextvars.bound_contextvars(app=app.name):
            result = await sync_connection(services, connection, app, kind, plan)
            deleted = await _succeed(services, connection_id, result)
    except ConnectionRevoked:
        log.info("sync_stopped_by_unlink")
        return {"status": "revoked"}
    except errors.RetryableError as exc:
        if retry := retry_later(exc, job_try):
            log.warning("sync_deferred", reason=str(exc), job_try=job_try)
            raise retry from exc
        await _fail(services, connection_id, "error", f"gave up after {job_try} tries: {exc}")
        return {"status": "error"}
    except errors.ReconsentRequired as exc:
        await _fail(services, connection_id, "needs_reauth", str(exc))
        return {"status": "needs_reauth"}
    except KeyMissing as exc:
        # This replica lacks a key another one sealed with: not the connection's fault.
        raise key_missing_retry(exc, job_try) from exc
    except (errors.PermanentError, errors.AppUnavailable, DecryptionError) as exc:
        await _fail(services, connection_id, "error", str(exc))
        return {"status": "error"}
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
