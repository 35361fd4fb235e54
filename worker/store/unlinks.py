"""Unlinking a connection: its data and tokens go, the tokens are owed a revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker.store import revocations, sync_runs
from worker.store.db import Conn


@dataclass(frozen=True)
class Unlinked:
    """What an unlink removed."""

    resources_deleted: int
    tokens_dropped: bool


async def unlink(conn: Conn, connection_id: str) -> Unlinked | None:
    """Delete the connection's data and tokens and mark it ``revoked``, in one transaction.

    Its latest access and refresh tokens move to ``pending_revocations`` until CMS has
    ended the grant with them. The row lock makes unlink wait for a page being written,
    and makes every later write of a sync in flight see ``revoked``
    (:func:`worker.store.connections.lock_live`).
    None for an unknown id.
    """
    async with conn.transaction():
        record = await conn.fetchrow(
            """SELECT access_token_enc, refresh_token_enc, app, client_id, patient_id
               FROM connections WHERE connection_id = $1 FOR UPDATE""",
            connection_id,
        )
        if record is None:
            return None
        deleted = await conn.fetchval(
            "WITH gone AS (DELETE FROM fhir_resources WHERE connection_id = $1 RETURNING 1)"
            " SELECT count(*) FROM gone",
            connection_id,
        )
        if record["refresh_token_enc"] is not None:
            await revocations.owe(
                conn,
                connection_id,
                revocations.Sealed(record["access_token_enc"], record["refresh_token_enc"]),
                end_grant=True,
                app=record["app"],
                client_id=record["client_id"],
                patient_id=record["patient_id"],
            )
        # Nothing that identifies the person stays (CONTRACT.md, unlink): not the patient
        # id, nor what they consented to and until when, nor the code's fingerprint.
        await conn.execute(
            """UPDATE connections SET status = 'revoked', access_token_enc = NULL,
                   refresh_token_enc = NULL, access_expires_at = NULL, code_sha256 = NULL,
                   patient_id = NULL, scopes = '{}', consent_expires_at = NULL,
                   last_error = NULL, updated_at = now(), status_changed_at = now(),
                   token_generation = token_generation + 1
               WHERE connection_id = $1""",
            connection_id,
        )
        await sync_runs.fail_running(conn, connection_id, "unlinked")
    return Unlinked(int(deleted), record["refresh_token_enc"] is not None)


async def relinked_since_unlinked(conn: Conn, connection_id: str, asked_at: datetime) -> bool:
    """Whether an unlink took effect after ``asked_at`` (an unlink job asked then: its own
    first try, say) and the connection was authorized again after it: that later consent
    stands, and a retry of the job must not unlink it."""
    found = await conn.fetchval(
        """SELECT EXISTS (
               SELECT 1 FROM audit_log u JOIN audit_log a USING (connection_id)
               WHERE u.connection_id = $1 AND u.event = 'unlinked' AND u.at >= $2
                 AND a.event = 'authorized' AND a.audit_id > u.audit_id)""",
        connection_id,
        asked_at,
    )
    return bool(found)
