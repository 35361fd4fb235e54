"""A connection's tokens: read decrypted, stored after a refresh by compare-and-swap on
``connections.token_generation`` (never lost: tokens that cannot be stored are owed a
revocation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from worker.crypto import TokenCipher
from worker.errors import ConnectionRevoked, UnknownConnection
from worker.store import revocations
from worker.store.db import Conn
from worker.store.revocations import token_context


class Issued(Protocol):
    """A token answer of CMS as the store sees it (``worker.bluebutton.oauth.TokenSet``)."""

    @property
    def access_token(self) -> str: ...

    @property
    def refresh_token(self) -> str: ...

    @property
    def expires_at(self) -> datetime: ...


@dataclass(frozen=True)
class Tokens:
    """Decrypted tokens of a connection; never logged, never stored in this form."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    # connections.token_generation when read: what a refresh's compare-and-swap expects.
    generation: int = 0

    @classmethod
    def issued(cls, answer: Issued, generation: int = 0) -> Tokens:
        """The tokens of a token answer, of the row's ``generation`` when read."""
        return cls(answer.access_token, answer.refresh_token, answer.expires_at, generation)

    def __repr__(self) -> str:
        return f"Tokens(access_expires_at={self.access_expires_at})"


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
            record["access_token_enc"], context=token_context(connection_id, "access")
        ),
        refresh_token=cipher.decrypt(
            record["refresh_token_enc"], context=token_context(connection_id, "refresh")
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
        cipher.encrypt(tokens.access_token, context=token_context(connection_id, "access")),
        cipher.encrypt(tokens.refresh_token, context=token_context(connection_id, "refresh")),
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
