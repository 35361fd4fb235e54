"""The grant a code exchange established: stored on its connection, tokens encrypted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker.crypto import TokenCipher
from worker.errors import GrantConflict
from worker.store import revocations
from worker.store.connections import Connection, get
from worker.store.db import Conn
from worker.store.revocations import token_context
from worker.store.tokens import Tokens


@dataclass(frozen=True)
class Grant:
    """What a code exchange established for a connection, and through which app's client."""

    app: str
    client_id: str
    environment: str
    tokens: Tokens
    patient_id: str
    scopes: tuple[str, ...]
    consent_expires_at: datetime | None
    code_sha256: str


def _grant_conflict(current: Connection | None, grant: Grant) -> str | None:
    """Why ``grant`` may not be stored on ``current``: a live (not revoked) connection never
    moves to another app or another patient without an unlink first."""
    if current is None or current.status == "revoked":
        return None
    if current.app != grant.app:
        return f"connection belongs to app {current.app!r}: unlink it before connecting another"
    if current.patient_id is not None and current.patient_id != grant.patient_id:
        return "connection holds another beneficiary's grant: unlink it before connecting another"
    return None


async def save_grant(
    conn: Conn, cipher: TokenCipher, connection_id: str, grant: Grant, *, seen_at: datetime
) -> bool:
    """Store what a code exchange gave, tokens encrypted, and mark the connection pending;
    False (nothing written) when it was unlinked after ``seen_at``, its status change the
    exchange started from: the unlink is the later word. GrantConflict (nothing written)
    when the grant would move a live connection to another app or patient.

    A new consent arms ``connection.consent_expiring`` again. Tokens it replaces (a relink)
    are owed a revocation: of those tokens only when the new grant is the same one at CMS
    (same client and patient), of their grant otherwise. Call inside a transaction.
    """
    conflict = _grant_conflict(await get(conn, connection_id), grant)
    if conflict is not None:
        raise GrantConflict(conflict)
    await _owe_replaced(conn, connection_id, grant)
    result = await conn.execute(
        """UPDATE connections SET patient_id = $2, scopes = $3, access_token_enc = $4,
               refresh_token_enc = $5, access_expires_at = $6, consent_expires_at = $7,
               code_sha256 = $8, app = $9, client_id = $10, environment = $11,
               status = 'pending', last_error = NULL, updated_at = now(),
               consent_expiring_sent_at = NULL,
               status_changed_at = now(), token_generation = token_generation + 1
           WHERE connection_id = $1
             AND NOT (status = 'revoked' AND status_changed_at > $12)""",
        connection_id,
        grant.patient_id,
        list(grant.scopes),
        cipher.encrypt(grant.tokens.access_token, context=token_context(connection_id, "access")),
        cipher.encrypt(grant.tokens.refresh_token, context=token_context(connection_id, "refresh")),
        grant.tokens.access_expires_at,
        grant.consent_expires_at,
        grant.code_sha256,
        grant.app,
        grant.client_id,
        grant.environment,
        seen_at,
    )
    return bool(result == "UPDATE 1")


async def _owe_replaced(conn: Conn, connection_id: str, grant: Grant) -> None:
    """Owe the revocation of the live tokens ``grant`` replaces (a relink), if any: of those
    tokens only when it is the same grant at CMS (same client and patient), else of their
    grant."""
    old = await conn.fetchrow(
        """SELECT access_token_enc, refresh_token_enc, app, client_id, patient_id
           FROM connections WHERE connection_id = $1 AND status <> 'revoked'
             AND refresh_token_enc IS NOT NULL FOR UPDATE""",
        connection_id,
    )
    if old is not None:
        same_grant = (old["client_id"], old["patient_id"]) == (grant.client_id, grant.patient_id)
        await revocations.owe(
            conn,
            connection_id,
            revocations.Sealed(old["access_token_enc"], old["refresh_token_enc"]),
            end_grant=not same_grant,
            app=old["app"],
            client_id=old["client_id"],
            patient_id=old["patient_id"],
        )
