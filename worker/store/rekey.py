"""Re-encrypting every stored token under the active key (key rotation)."""

from __future__ import annotations

from typing import Final

from worker.crypto import TokenCipher
from worker.store.db import Conn
from worker.store.revocations import token_context

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
            access = cipher.reseal(record["access_token_enc"], context=token_context(cid, "access"))
            refresh = cipher.reseal(
                record["refresh_token_enc"], context=token_context(cid, "refresh")
            )
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
        access = cipher.reseal(record["access_token_enc"], context=token_context(cid, "access"))
        refresh = cipher.reseal(record["refresh_token_enc"], context=token_context(cid, "refresh"))
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
