"""Connection rows: status, consent, and tokens, which only ever leave here decrypted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import asyncpg

from worker.constants import MAX_ERROR_CHARS
from worker.crypto import TokenCipher
from worker.errors import ConnectionRevoked, GrantConflict, UnknownConnection
from worker.store import revocations, sync_runs
from worker.store.db import Conn

Status = Literal["pending", "active", "needs_reauth", "revoked", "error"]

_COLUMNS: Final = """connection_id, app, client_id, environment, patient_id, status, scopes,
    consent_expires_at, last_synced_at, last_error, access_expires_at, code_sha256,
    status_changed_at, refresh_token_enc IS NOT NULL AS has_tokens"""


@dataclass(frozen=True)
class Connection:
    """A connection row, without its tokens."""

    connection_id: str
    app: str
    client_id: str | None  # the app's client that issued the tokens (None: before apps)
    environment: str | None
    patient_id: str | None
    status: Status
    scopes: tuple[str, ...]
    consent_expires_at: datetime | None
    last_synced_at: datetime | None
    last_error: str | None
    access_expires_at: datetime | None
    code_sha256: str | None
    status_changed_at: datetime
    has_tokens: bool


@dataclass(frozen=True)
class Tokens:
    """Decrypted tokens of a connection; never logged, never stored in this form."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    # connections.token_generation when read: what a refresh's compare-and-swap expects.
    generation: int = 0

    def __repr__(self) -> str:
        return f"Tokens(access_expires_at={self.access_expires_at})"


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


def _row(record: asyncpg.Record) -> Connection:
    return Connection(**{**dict(record), "scopes": tuple(record["scopes"])})


def _context(connection_id: str, column: str) -> str:
    return f"{connection_id}/{column}"


async def get(conn: Conn, connection_id: str) -> Connection | None:
    """The connection, or None when the id is unknown."""
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM connections WHERE connection_id = $1", connection_id
    )
    return None if record is None else _row(record)


async def create_pending(conn: Conn, connection_id: str, app: str) -> Connection:
    """Insert the connection as ``pending`` unless it exists; returns the row either way."""
    await conn.execute(
        "INSERT INTO connections (connection_id, app) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        connection_id,
        app,
    )
    found = await get(conn, connection_id)
    assert found is not None
    return found


async def list_all(
    conn: Conn,
    connection_id: str | None = None,
    *,
    consent_before: datetime | None = None,
    app: str | None = None,
) -> list[Connection]:
    """Every connection (or the one named), in id order; ``consent_before`` keeps the live
    ones whose consent lapses before then, ``app`` those of one app."""
    records = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM connections
            WHERE ($1::text IS NULL OR connection_id = $1)
              AND ($2::timestamptz IS NULL OR (consent_expires_at < $2
                   AND status IN ('active', 'pending', 'error')))
              AND ($3::text IS NULL OR app = $3)
            ORDER BY connection_id""",
        connection_id,
        consent_before,
        app,
    )
    return [_row(record) for record in records]


def grant_conflict(current: Connection | None, grant: Grant) -> str | None:
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

    Tokens it replaces (a relink) are owed a revocation: of those tokens only when the new
    grant is the same one at CMS (same client and patient), of their grant otherwise.
    Call inside a transaction.
    """
    conflict = grant_conflict(await get(conn, connection_id), grant)
    if conflict is not None:
        raise GrantConflict(conflict)
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
    result = await conn.execute(
        """UPDATE connections SET patient_id = $2, scopes = $3, access_token_enc = $4,
               refresh_token_enc = $5, access_expires_at = $6, consent_expires_at = $7,
               code_sha256 = $8, app = $9, client_id = $10, environment = $11,
               status = 'pending', last_error = NULL, updated_at = now(),
               status_changed_at = now(), token_generation = token_generation + 1
           WHERE connection_id = $1
             AND NOT (status = 'revoked' AND status_changed_at > $12)""",
        connection_id,
        grant.patient_id,
        list(grant.scopes),
        cipher.encrypt(grant.tokens.access_token, context=_context(connection_id, "access")),
        cipher.encrypt(grant.tokens.refresh_token, context=_context(connection_id, "refresh")),
        grant.tokens.access_expires_at,
        grant.consent_expires_at,
        grant.code_sha256,
        grant.app,
        grant.client_id,
        grant.environment,
        seen_at,
    )
    return bool(result == "UPDATE 1")


async def load_tokens(conn: Conn, cipher: TokenCipher, connection_id: str) -> Tokens:
    """Decrypt the tokens, with the generation they belong to (no lock is taken)."""
    record = await conn.fetchrow(
        """SELECT access_token_enc, refresh_token_enc, access_expires_at, token_generation
           FROM connections WHERE connection_id = $1""",
        connection_id,
    )
    if record is None:
        raise UnknownConnection(f"connection {connection_id!r} does not exist")
    if record["refresh_token_enc"] is None:
        raise ConnectionRevoked(f"connection {connection_id!r} holds no tokens")
    return Tokens(
        access_token=cipher.decrypt(
            record["access_token_enc"], context=_context(connection_id, "access")
        ),
        refresh_token=cipher.decrypt(
            record["refresh_token_enc"], context=_context(connection_id, "refresh")
        ),
        access_expires_at=record["access_expires_at"],
        generation=record["token_generation"],
    )


async def save_refreshed(
    conn: Conn,
    cipher: TokenCipher,
    connection_id: str,
    tokens: Tokens,
    *,
    app: str,
    client_id: str | None,
) -> bool:
    """Store a refresh's tokens over the generation they were refreshed from
    (``tokens.generation``, a compare-and-swap); True when stored.

    False when the generation moved meanwhile: an unlink dropped the tokens, or a code
    exchange stored a new grant. The tokens are then owed a revocation instead, never lost:
    CMS holds them live. An unlinked connection's grant is to end (its unlink's own row
    holds the tokens this refresh spent, which can no longer end it); a relinked one's
    grant belongs to the new link, so only these tokens are revoked. (Another refresh
    cannot have moved it: it would have spent the same refresh token, and CMS answers
    only the first spender; see worker.sync.tokens.) Call inside a transaction.
    """
    result = await conn.execute(
        """UPDATE connections SET access_token_enc = $2, refresh_token_enc = $3,
               access_expires_at = $4, token_generation = token_generation + 1,
               updated_at = now()
           WHERE connection_id = $1 AND token_generation = $5
             AND refresh_token_enc IS NOT NULL""",
        connection_id,
        cipher.encrypt(tokens.access_token, context=_context(connection_id, "access")),
        cipher.encrypt(tokens.refresh_token, context=_context(connection_id, "refresh")),
        tokens.access_expires_at,
        tokens.generation,
    )
    if result == "UPDATE 1":
        return True
    sealed = revocations.seal(cipher, connection_id, tokens.access_token, tokens.refresh_token)
    await _owe_unstored(conn, connection_id, sealed, app=app, client_id=client_id)
    return False


async def _owe_unstored(
    conn: Conn, connection_id: str, sealed: revocations.Sealed, *, app: str, client_id: str | None
) -> None:
    unlinked = await conn.fetchval(
        "SELECT status = 'revoked' OR refresh_token_enc IS NULL FROM connections"
        " WHERE connection_id = $1",
        connection_id,
    )
    # The unlink's own owed row remembers whose grant it was (the row forgot the patient).
    patient_sha256 = await conn.fetchval(
        """SELECT patient_sha256 FROM pending_revocations WHERE connection_id = $1
           ORDER BY revocation_id DESC LIMIT 1""",
        connection_id,
    )
    await revocations.owe_hashed(
        conn,
        connection_id,
        sealed,
        end_grant=unlinked is not False,  # a row gone altogether: end the grant too
        app=app,
        client_id=client_id,
        patient_sha256=patient_sha256,
    )


async def set_status(
    conn: Conn,
    connection_id: str,
    status: Status,
    *,
    error: str | None = None,
    synced_at: datetime | None = None,
    grant: str | None = None,
) -> bool:
    """Move the connection to ``status``; a revoked connection stays revoked. With
    ``grant`` (the ``code_sha256`` a job started from), only while no new authorization
    replaced it: a job of the old grant must not judge the new one. True when written."""
    result = await conn.execute(
        """UPDATE connections SET status = $2, last_error = $3,
               last_synced_at = COALESCE($4, last_synced_at), updated_at = now(),
               status_changed_at = CASE WHEN status = $2 THEN status_changed_at ELSE now() END
           WHERE connection_id = $1 AND status <> 'revoked'
             AND ($5::text IS NULL OR code_sha256 = $5)""",
        connection_id,
        status,
        None if error is None else error[:MAX_ERROR_CHARS],
        synced_at,
        grant,
    )
    return bool(result == "UPDATE 1")


async def lock_live(conn: Conn, connection_id: str) -> None:
    """Share-lock the row for this transaction, or raise if it was unlinked meanwhile.

    Unlink takes the row FOR UPDATE, so a page written under this lock either commits
    before the unlink starts (and is deleted by it) or sees ``revoked`` and writes nothing.
    """
    status = await conn.fetchval(
        "SELECT status FROM connections WHERE connection_id = $1 FOR SHARE", connection_id
    )
    if status is None or status == "revoked":
        raise ConnectionRevoked(f"connection {connection_id!r} was unlinked")


@dataclass(frozen=True)
class Unlinked:
    """What an unlink removed."""

    resources_deleted: int
    tokens_dropped: bool


async def unlink(conn: Conn, connection_id: str) -> Unlinked | None:
    """Delete the connection's data and tokens and mark it ``revoked``, in one transaction.

    Its latest access and refresh tokens move to ``pending_revocations`` until CMS has
    ended the grant with them. The row lock makes unlink wait for a page being written,
    and makes every later write of a sync in flight see ``revoked`` (:func:`lock_live`).
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


async def due_for_resync(conn: Conn, synced_before: datetime, limit: int, *, app: str) -> list[str]:
    """Active connections of ``app`` last synced before ``synced_before``, the oldest first."""
    records = await conn.fetch(
        """SELECT connection_id FROM connections
           WHERE status = 'active' AND app = $3
             AND (last_synced_at IS NULL OR last_synced_at < $1)
           ORDER BY last_synced_at NULLS FIRST, connection_id LIMIT $2""",
        synced_before,
        limit,
        app,
    )
    return [record["connection_id"] for record in records]


async def count_due(conn: Conn, synced_before: datetime) -> dict[str, int]:
    """How many active connections of each app are due for a resync."""
    records = await conn.fetch(
        """SELECT app, count(*) AS n FROM connections
           WHERE status = 'active' AND (last_synced_at IS NULL OR last_synced_at < $1)
           GROUP BY app""",
        synced_before,
    )
    return {record["app"]: int(record["n"]) for record in records}


@dataclass(frozen=True)
class Purgeable:
    """A connection the retention rules send through the unlink path."""

    connection_id: str
    status: Status
    since: datetime
    resources: int


async def purgeable(
    conn: Conn,
    *,
    needs_reauth_before: datetime,
    error_before: datetime,
    except_apps: Sequence[str] = (),
) -> list[Purgeable]:
    """Connections waiting for a re-consent since before ``needs_reauth_before``, or in
    ``error`` since before ``error_before``, with how many resources each still stores;
    none of ``except_apps`` (apps CMS holds inactive: nobody could re-consent through them)."""
    records = await conn.fetch(
        """SELECT c.connection_id, c.status, c.status_changed_at AS since,
                  (SELECT count(*) FROM fhir_resources r
                   WHERE r.connection_id = c.connection_id) AS resources
           FROM connections c
           WHERE ((c.status = 'needs_reauth' AND c.status_changed_at < $1)
              OR (c.status = 'error' AND c.status_changed_at < $2))
             AND NOT (c.app = ANY($3::text[]))
           ORDER BY c.connection_id""",
        needs_reauth_before,
        error_before,
        list(except_apps),
    )
    return [Purgeable(**dict(record)) for record in records]


async def count_by_app_and_status(conn: Conn) -> dict[tuple[str, str], int]:
    """How many connections each app has in each status."""
    records = await conn.fetch(
        "SELECT app, status, count(*) AS n FROM connections GROUP BY app, status"
    )
    return {(record["app"], record["status"]): int(record["n"]) for record in records}


async def active_ids(conn: Conn) -> list[str]:
    """Every active connection's id."""
    records = await conn.fetch(
        "SELECT connection_id FROM connections WHERE status = 'active' ORDER BY connection_id"
    )
    return [record["connection_id"] for record in records]


REKEY_BATCH: Final = 500


async def _rekey_batch(conn: Conn, cipher: TokenCipher, after: str) -> tuple[str | None, int]:
    async with conn.transaction():
        records = await conn.fetch(
            """SELECT connection_id, access_token_enc, refresh_token_enc FROM connections
               WHERE connection_id > $1 AND refresh_token_enc IS NOT NULL
               ORDER BY connection_id LIMIT $2 FOR UPDATE""",
            after,
            REKEY_BATCH,
        )
        changed = 0
        for record in records:
            cid = record["connection_id"]
            access = cipher.reseal(record["access_token_enc"], context=_context(cid, "access"))
            refresh = cipher.reseal(record["refresh_token_enc"], context=_context(cid, "refresh"))
            if access or refresh:
                await conn.execute(
                    """UPDATE connections SET access_token_enc = coalesce($2, access_token_enc),
                           refresh_token_enc = coalesce($3, refresh_token_enc)
                       WHERE connection_id = $1""",
                    cid,
                    access,
                    refresh,
                )
                changed += 1
    return (records[-1]["connection_id"] if records else None), changed


async def rekey_all(conn: Conn, cipher: TokenCipher) -> int:
    """Re-encrypt every stored token under the active key, in batches; returns rows changed.

    Tokens already under the active key are left alone, so an interrupted run can go again.
    """
    changed, after = 0, ""
    while True:
        last, count = await _rekey_batch(conn, cipher, after)
        changed += count
        if last is None:
            break
        after = last
    pending = await conn.fetch(
        "SELECT revocation_id, connection_id, access_token_enc, refresh_token_enc"
        " FROM pending_revocations"
    )
    for record in pending:
        cid = record["connection_id"]
        access = cipher.reseal(record["access_token_enc"], context=_context(cid, "access"))
        refresh = cipher.reseal(record["refresh_token_enc"], context=_context(cid, "refresh"))
        # Written only over the values read: tokens a refresh stored meanwhile stay as they are.
        if (access or refresh) and await conn.fetchval(
            """UPDATE pending_revocations SET access_token_enc = coalesce($2, access_token_enc),
                   refresh_token_enc = coalesce($3, refresh_token_enc)
               WHERE revocation_id = $1 AND refresh_token_enc = $4
                 AND access_token_enc IS NOT DISTINCT FROM $5 RETURNING true""",
            record["revocation_id"],
            access,
            refresh,
            record["refresh_token_enc"],
            record["access_token_enc"],
        ):
            changed += 1
    return changed


async def fail_exchange(conn: Conn, connection_id: str, code_sha256: str, reason: str) -> bool:
    """Move the connection to ``error`` for a failed code exchange, unless it already holds
    the tokens of that very code (a duplicate run's refusal must never undo a success) or
    was unlinked; False when nothing changed."""
    result = await conn.execute(
        """UPDATE connections SET status = 'error', last_error = $3, updated_at = now(),
               status_changed_at = CASE WHEN status = 'error' THEN status_changed_at
                                        ELSE now() END
           WHERE connection_id = $1 AND status <> 'revoked'
             AND NOT (code_sha256 IS NOT DISTINCT FROM $2 AND refresh_token_enc IS NOT NULL)""",
        connection_id,
        code_sha256,
        reason[:MAX_ERROR_CHARS],
    )
    return bool(result == "UPDATE 1")
