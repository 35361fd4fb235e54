"""The ``unlink`` job: delete everything stored for a connection, then end the grant at CMS.

Local deletion comes first and commits at once, whatever BB2 is doing; the revocation at
CMS is owed until it succeeds (``pending_revocations``) and is retried with the job. Running
it twice, or on an unknown id, does nothing more.
"""

from __future__ import annotations

from typing import Any

import structlog

from worker import errors
from worker.bluebutton import oauth
from worker.jobs.payloads import UnlinkJob, parse_payload
from worker.jobs.retrying import retry_later
from worker.jobs.services import Services
from worker.store import audit, connections

log = structlog.get_logger(__name__)
KEPT = "revocation failed; token kept in pending_revocations"


async def _delete_locally(services: Services, connection_id: str) -> bool:
    async with services.pool.acquire() as conn:
        unlinked = await connections.unlink(conn, connection_id)
        if unlinked is None:
            return False
        if unlinked.tokens_dropped or unlinked.resources_deleted:
            await audit.record(
                conn,
                connection_id,
                "unlinked",
                resources_deleted=unlinked.resources_deleted,
                tokens_dropped=unlinked.tokens_dropped,
            )
            log.info("unlinked", resources_deleted=unlinked.resources_deleted)
    return True


async def revoke_owed(services: Services, connection_id: str) -> str:
    """Revoke at CMS the token the connection still owes, with the client that issued it;
    a failure is recorded (the token stays owed), and a RetryableError is raised again."""
    async with services.pool.acquire() as conn:
        token = await connections.pending_revocation(conn, services.cipher, connection_id)
        connection = await connections.get(conn, connection_id)
    if token is None or connection is None:
        return "nothing to revoke"
    try:
        app = await services.app_of(connection)
        await oauth.revoke(await services.bluebutton(app), app.credentials, token, end_grant=True)
    except (errors.BlueButtonError, errors.AppUnavailable) as exc:
        async with services.pool.acquire() as conn:
            await connections.revocation_failed(conn, connection_id, str(exc))
        log.warning("revocation_failed", reason=str(exc))
        if isinstance(exc, errors.RetryableError):
            raise
        return KEPT
    async with services.pool.acquire() as conn, conn.transaction():
        await connections.revocation_done(conn, connection_id)
        await audit.record(conn, connection_id, "revoked_at_cms")
    return "revoked at CMS"


async def _revoke_at_cms(services: Services, connection_id: str, job_try: int) -> str:
    try:
        return await revoke_owed(services, connection_id)
    except errors.RetryableError as exc:
        if retry := retry_later(exc, job_try):
            raise retry from exc
        return KEPT


async def unlink(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """arq job ``unlink(connection_id)``."""
    job = parse_payload(UnlinkJob, args, kwargs)
    services: Services = ctx["services"]
    with structlog.contextvars.bound_contextvars(job="unlink", connection_id=job.connection_id):
        if not await _delete_locally(services, job.connection_id):
            log.info("unlink_of_unknown_connection")
            return {"status": "unknown"}
        revocation = await _revoke_at_cms(services, job.connection_id, ctx["job_try"])
        return {"status": "revoked", "cms": revocation}
