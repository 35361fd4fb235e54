"""Revocations CMS still owes us: one row each, tokens encrypted like the connection's.

A row is written in the transaction that drops the tokens from the connection (an unlink,
a relink replacing them, a grant dropped after an unlink) and deleted, in the transaction
of its audit row, once CMS has settled it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from worker.constants import MAX_ERROR_CHARS
from worker.crypto import TokenCipher
from worker.store.db import Conn


def _patient_hash(patient_id: str | None) -> str | None:
    """What a row keeps of the patient id: enough to compare, nothing to read."""
    return None if patient_id is None else hashlib.sha256(patient_id.encode()).hexdigest()


def token_context(connection_id: str, kind: str) -> str:
    """The encryption context of a connection's token (the same as on its row)."""
    return f"{connection_id}/{kind}"


@dataclass(frozen=True)
class Owed:
    """One owed revocation, decrypted; never logged in this form."""

    revocation_id: int
    connection_id: str
    app: str
    client_id: str | None
    end_grant: bool
    access_token: str | None
    refresh_token: str
    grant_refusals: int

    def __repr__(self) -> str:
        return f"Owed(revocation_id={self.revocation_id}, end_grant={self.end_grant})"


@dataclass(frozen=True)
class Sealed:
    """Tokens as stored (encrypted under the connection's contexts)."""

    access_token_enc: str | None
    refresh_token_enc: str


async def owe(
    conn: Conn,
    connection_id: str,
    sealed: Sealed,
    *,
    end_grant: bool,
    app: str,
    client_id: str | None,
    patient_id: str | None,
) -> None:
    """Add an owed revocation (never replacing another)."""
    await owe_hashed(
        conn,
        connection_id,
        sealed,
        end_grant=end_grant,
        app=app,
        client_id=client_id,
        patient_sha256=_patient_hash(patient_id),
    )


async def owe_hashed(
    conn: Conn,
    connection_id: str,
    sealed: Sealed,
    *,
    end_grant: bool,
    app: str,
    client_id: str | None,
    patient_sha256: str | None,
) -> None:
    """:func:`owe`, given only the patient id's hash (a row that forgot the id)."""
    await conn.execute(
        """INSERT INTO pending_revocations (connection_id, access_token_enc, refresh_token_enc,
               end_grant, app, client_id, patient_sha256)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        connection_id,
        sealed.access_token_enc,
        sealed.refresh_token_enc,
        end_grant,
        app,
        client_id,
        patient_sha256,
    )


def seal(cipher: TokenCipher, connection_id: str, access: str | None, refresh: str) -> Sealed:
    """Encrypt tokens for a row of ``connection_id``."""
    return Sealed(
        None
        if access is None
        else cipher.encrypt(access, context=token_context(connection_id, "access")),
        cipher.encrypt(refresh, context=token_context(connection_id, "refresh")),
    )


async def owed_of(conn: Conn, cipher: TokenCipher, connection_id: str) -> list[Owed]:
    """The connection's owed revocations, the oldest first."""
    records = await conn.fetch(
        """SELECT revocation_id, app, client_id, end_grant, access_token_enc,
                  refresh_token_enc, grant_refusals
           FROM pending_revocations WHERE connection_id = $1 ORDER BY revocation_id""",
        connection_id,
    )
    return [
        Owed(
            revocation_id=record["revocation_id"],
            connection_id=connection_id,
            app=record["app"],
            client_id=record["client_id"],
            end_grant=record["end_grant"],
            access_token=None
            if record["access_token_enc"] is None
            else cipher.decrypt(
                record["access_token_enc"], context=token_context(connection_id, "access")
            ),
            refresh_token=cipher.decrypt(
                record["refresh_token_enc"], context=token_context(connection_id, "refresh")
            ),
            grant_refusals=record["grant_refusals"],
        )
        for record in records
    ]


async def unlinked_with_owed(conn: Conn) -> list[str]:
    """Connections unlinked (or gone) that CMS still owes a revocation: the unlink job
    retries them. Owed rows of live connections (a relink's old tokens) wait for the
    connection's next job instead: an unlink would end it."""
    records = await conn.fetch(
        """SELECT DISTINCT p.connection_id FROM pending_revocations p
           LEFT JOIN connections c USING (connection_id)
           WHERE c.connection_id IS NULL OR c.status = 'revoked'
           ORDER BY p.connection_id"""
    )
    return [record["connection_id"] for record in records]


async def unsynced_with_owed(conn: Conn) -> list[str]:
    """Live connections that CMS still owes a revocation and that no resync will sync
    (waiting for a re-consent, or pending): their owed rows would otherwise wait for a
    re-consent, or for the purge of a dormant connection."""
    records = await conn.fetch(
        """SELECT DISTINCT p.connection_id FROM pending_revocations p
           JOIN connections c USING (connection_id)
           WHERE c.status IN ('needs_reauth', 'pending')
           ORDER BY p.connection_id"""
    )
    return [record["connection_id"] for record in records]


async def shares_grant(conn: Conn, revocation_id: int) -> bool:
    """Whether a live connection holds tokens of the same grant (same client and patient):
    CMS keeps one grant per (beneficiary, app) (FACTS.md, Authorization). The row's own
    connection counts too when it was linked again since (an unlinked one holds no tokens)."""
    # Live: holds tokens and is not waiting for a re-consent (/v2/o/revoke/ would end the
    # grant under it too).
    found = await conn.fetchval(
        """SELECT EXISTS (
               SELECT 1 FROM pending_revocations p JOIN connections c
                 ON c.app = p.app
                AND c.client_id IS NOT DISTINCT FROM p.client_id
                AND encode(sha256(convert_to(c.patient_id, 'UTF8')), 'hex') = p.patient_sha256
               WHERE p.revocation_id = $1 AND c.refresh_token_enc IS NOT NULL
                 AND c.status NOT IN ('revoked', 'needs_reauth'))""",
        revocation_id,
    )
    return bool(found)


async def keep_tokens(
    conn: Conn, cipher: TokenCipher, owed: Owed, access_token: str, refresh_token: str
) -> None:
    """Store the tokens a refresh just gave, before they are used: the old ones are spent."""
    sealed = seal(cipher, owed.connection_id, access_token, refresh_token)
    await conn.execute(
        """UPDATE pending_revocations SET access_token_enc = $2, refresh_token_enc = $3
           WHERE revocation_id = $1""",
        owed.revocation_id,
        sealed.access_token_enc,
        sealed.refresh_token_enc,
    )


async def grant_refused(conn: Conn, revocation_id: int) -> None:
    """Count a 500 from ``/v2/o/revoke/`` to an access token just refreshed."""
    await conn.execute(
        "UPDATE pending_revocations SET grant_refusals = grant_refusals + 1"
        " WHERE revocation_id = $1",
        revocation_id,
    )


async def settled(conn: Conn, revocation_id: int) -> None:
    """CMS settled the revocation: forget its tokens."""
    await conn.execute("DELETE FROM pending_revocations WHERE revocation_id = $1", revocation_id)


async def failed(conn: Conn, revocation_id: int, error: str) -> None:
    """Count a failed attempt, keeping the tokens for the next one."""
    await conn.execute(
        """UPDATE pending_revocations SET attempts = attempts + 1, last_error = $2
           WHERE revocation_id = $1""",
        revocation_id,
        error[:MAX_ERROR_CHARS],
    )
