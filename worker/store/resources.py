"""Stored FHIR resources: page upserts that leave unchanged rows untouched."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from worker.store.db import Conn

_UPSERT: Final = """
INSERT INTO fhir_resources AS t
    (connection_id, resource_type, resource_id, resource, content_hash, last_updated, fetched_at)
SELECT $1, $2, r.id, r.resource, r.hash, r.last_updated, now()
FROM unnest($3::text[], $4::jsonb[], $5::bytea[], $6::timestamptz[])
    AS r(id, resource, hash, last_updated)
ON CONFLICT (connection_id, resource_type, resource_id) DO UPDATE
SET resource = EXCLUDED.resource, content_hash = EXCLUDED.content_hash,
    last_updated = EXCLUDED.last_updated, fetched_at = EXCLUDED.fetched_at
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
RETURNING (xmax = 0) AS inserted
"""


@dataclass(frozen=True)
class ResourceRow:
    """One resource as BB2 returned it, with the key fields already read out."""

    resource_id: str
    resource: dict[str, Any]
    last_updated: datetime
    content_hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        # Hashing a page is CPU work: build rows off the event loop (asyncio.to_thread).
        object.__setattr__(self, "content_hash", content_hash(self.resource))


@dataclass(frozen=True)
class UpsertCounts:
    """What one upsert did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def content_hash(resource: dict[str, Any]) -> bytes:
    """sha256 of the resource's canonical JSON (sorted keys), stable across key order."""
    return hashlib.sha256(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)).digest()


def unique_by_id(rows: Iterable[ResourceRow]) -> list[ResourceRow]:
    """One row per id (the last wins), in id order so concurrent batches lock alike."""
    by_id = {row.resource_id: row for row in rows}
    return [by_id[rid] for rid in sorted(by_id)]


async def upsert(
    conn: Conn,
    connection_id: str,
    resource_type: str,
    resources: Iterable[ResourceRow],
) -> UpsertCounts:
    """Insert new resources, rewrite changed ones, and leave identical ones alone."""
    rows = unique_by_id(resources)
    if not rows:
        return UpsertCounts()
    written = await conn.fetch(
        _UPSERT,
        connection_id,
        resource_type,
        [row.resource_id for row in rows],
        [row.resource for row in rows],
        [row.content_hash for row in rows],
        [row.last_updated for row in rows],
    )
    inserted = sum(1 for record in written if record["inserted"])
    return UpsertCounts(
        inserted=inserted, updated=len(written) - inserted, unchanged=len(rows) - len(written)
    )


async def count_by_type(conn: Conn, connection_ids: list[str]) -> dict[str, dict[str, int]]:
    """How many resources of each type are stored for each of the connections (in one
    query: ``status`` lists thousands)."""
    records = await conn.fetch(
        "SELECT connection_id, resource_type, count(*) AS n FROM fhir_resources"
        " WHERE connection_id = ANY($1) GROUP BY connection_id, resource_type",
        connection_ids,
    )
    counts: dict[str, dict[str, int]] = {cid: {} for cid in connection_ids}
    for record in records:
        counts[record["connection_id"]][record["resource_type"]] = int(record["n"])
    return counts
