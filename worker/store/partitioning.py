"""``fhir_resources`` hash-partitioned by ``connection_id``: the online move of a populated
table (the SQL lives in migration 010; this drives it in batches and reports progress)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from worker.store.db import Conn

# 16 hash partitions: at a million connections (about 1 TB of EOB JSON before compression,
# README "Storage at scale") each holds some 25 GB compressed, small enough to vacuum and
# reindex one at a time; more would only add planning work to every query that is not pinned
# to one connection. A power of two, so that a later split divides every partition evenly.
PARTITIONS: Final = 16
BATCH: Final = 1000


async def is_partitioned(conn: Conn) -> bool:
    """Whether ``fhir_resources`` is the partitioned table yet."""
    kind = await conn.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = 'fhir_resources'::regclass"
    )
    return bool(kind == "p")


async def move_online(
    conn: Conn,
    *,
    batch: int = BATCH,
    partitions: int = PARTITIONS,
    progress: Callable[[int], None] | None = None,
) -> int | None:
    """Move a populated ``fhir_resources`` into the partitioned layout while syncs go on;
    returns the rows copied, or None if it was partitioned already.

    Each batch commits on its own (``conn`` must not be inside a transaction), so locks are
    held briefly; only the final name swap takes an exclusive lock, for a moment. A move
    that was interrupted starts its copy again from the first key: rows copied before are
    skipped, and writes since were mirrored by the trigger.
    """
    if not await conn.fetchval("SELECT fhir_resources_move_start($1)", partitions):
        return None
    key = ("", "", "")
    total = 0
    while True:
        row = await conn.fetchrow(
            "SELECT * FROM fhir_resources_move_batch($1, $2, $3, $4)", *key, batch
        )
        assert row is not None
        if row["copied"] == 0:
            break
        total += row["copied"]
        key = (row["last_c"], row["last_t"], row["last_i"])
        if progress is not None:
            progress(total)
    await conn.execute("SELECT fhir_resources_move_finish()")
    return total
