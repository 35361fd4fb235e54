"""Unlinking a connection: its data and tokens go, the tokens are owed a revocation; a
retention purge does the same, if still due when it runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from worker.events.emit import emit
from worker.store import audit, revocations, sync_runs
from worker.store.db import Conn
from worker.store.listing import PurgeCutoffs


@dataclass(frozen=True)
class Unlinked:
    """What an unlink removed."""

    resources_deleted: int
    tokens_dropped: bool


async def unlink(conn: Conn, connection_id: str) -> Unlinked | None:
    """Delete the connection's data and tokens and mark it ``revoked``, in one transaction
    with its ``unlinked`` audit row (:func:`relinked_since_unlinked` reads it) and its
    ``connection.revoked`` event.

    Its latest access and refresh tokens move to ``pending_revocations`` until CMS has
    ended the grant with them. The row lock makes unlink wait for a page being written,
    and makes every later write of a sync in flight see ``revoked``
    (:func:`worker.store.connections.lock_live`).
    None for an unknown id.
    """
    async with conn.transaction():
        record = await _lock(conn, connection_id)
        return None if record is None else await _remove(conn, connection_id, record)


async def purge(conn: Conn, connection_id: str, due: PurgeCutoffs) -> Unlinked | None:
    """A retention purge: :func:`unlink`, if ``due`` (the retention rules now) still covers
    the connection once its row is locked. None, nothing changed, when it does not (or the
    id is unknown): the person re-consented since the purge was decided, and that stands."""
    async with conn.transaction():
        record = await _lock(conn, connection_id)
        if record is None or not due.covers(record["status"], record["status_changed_at"]):
            return None
        return await _remove(conn, connection_id, record, purge=True)


async def _lock(conn: Conn, connection_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT access_token_enc, refresh_token_enc, app, client_id, patient_id, status,
                  status_changed_at
           FROM connections WHERE connection_id = $1 FOR UPDATE""",
        connection_id,
    )


async def _remove(conn: Conn, connection_id: str, record: asyncpg.Record, **why: Any) -> Unlinked:
    """Unlink the connection whose row, ``record``, this transaction has locked; ``why``
    goes into the audit row."""
    deleted = int(
        await conn.fetchval(
            "WITH gone AS (DELETE FROM fhir_resources WHERE connection_id = $1 RETURNING 1)"
            " SELECT count(*) FROM gone",
            connection_id,
        )
    )
    tokens_dropped = record["refresh_token_enc"] is not None
    if tokens_dropped:
        await revocations.owe(
            conn,
            connection_id,
            revocations.Sealed(record["access_token_enc"], record["refresh_token_enc"]),
            end_grant=True,
            app=record["app"],
            client_id=record["client_id"],
            patient_id=record["patient_id"],
        )
    await _mark_revoked(conn, connection_id)
    if record["status"] != "revoked":  # unlinking twice tells nothing more
        await emit(
            conn,
            "connection.revoked",
            app=record["app"],
            connection_id=connection_id,
            resources_deleted=deleted,
            revoked_at=datetime.now(UTC),
        )
    if tokens_dropped or deleted:
        await audit.record(
            conn,
            connection_id,
            "unlinked",
            resources_deleted=deleted,
            tokens_dropped=tokens_dropped,
            **why,
        )
    return Unlinked(deleted, tokens_dropped)


async def _mark_revoked(conn: Conn, connection_id: str) -> None:
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


async def relinked_since_unlinked(conn: Conn, connection_id: str, asked_at: datetime) -> bool:
    """Whether the connection, unlinked when an unlink job was asked at ``asked_at`` (the
    nightly retry of an owed revocation) or by that job since (its first try), was
    authorized again after that unlink: the later consent stands, and the job must not
    unlink it. A connect seen before the unlink but stored after it is no relink: its
    grant is refused (:func:`worker.store.grants.save_grant`), and no unlink preceded it."""
    found = await conn.fetchval(
        """WITH last_before AS (
               SELECT event, audit_id FROM audit_log
               WHERE connection_id = $1 AND event IN ('unlinked', 'authorized') AND at < $2
               ORDER BY audit_id DESC LIMIT 1),
           unlinked AS (
               SELECT audit_id FROM audit_log
               WHERE connection_id = $1 AND event = 'unlinked' AND at >= $2
               UNION ALL SELECT audit_id FROM last_before WHERE event = 'unlinked')
           SELECT EXISTS (
               SELECT 1 FROM audit_log a JOIN unlinked u ON a.audit_id > u.audit_id
               WHERE a.connection_id = $1 AND a.event = 'authorized')""",
        connection_id,
        asked_at,
    )
    return bool(found)
