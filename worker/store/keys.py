"""Which encryption key ids the stored values are sealed under (worker.crypto), so that a
replica refuses to start without a key it would need."""

from __future__ import annotations

from typing import Final

from worker.store.db import Conn

# Every column holding a value sealed by worker.crypto. `bbingest rotate-key` re-encrypts
# each of them (store.rekey.rekey_all, store.apps.rekey_all,
# store.webhooks.rekey_all).
SEALED_COLUMNS: Final = (
    ("connections", "access_token_enc"),
    ("connections", "refresh_token_enc"),
    ("pending_revocations", "refresh_token_enc"),
    ("apps", "client_secret_enc"),
    ("app_clients_retired", "client_secret_enc"),
    ("webhook_endpoints", "secret_enc"),
    ("webhook_endpoints", "previous_secret_enc"),
)


async def stored_key_ids(conn: Conn) -> set[str]:
    """The key ids of every sealed value in the database (``v1.<kid>.<blob>``)."""
    union = " UNION ".join(
        f"SELECT DISTINCT split_part({column}, '.', 2) AS kid FROM {table}"
        f" WHERE {column} IS NOT NULL"
        for table, column in SEALED_COLUMNS
    )
    return {record["kid"] for record in await conn.fetch(union)}
