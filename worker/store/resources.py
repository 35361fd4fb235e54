"""Stored FHIR resources: page upserts that leave unchanged rows untouched."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from worker.store.db import Conn

# Which of a page's resources are stored already, and with what hash: unchanged ones are
# then not even sent (most of a resync), and the rest are known to be new or changed.
_STORED_HASHES: Final = """
SELECT resource_id, content_hash FROM fhir_resources
WHERE connection_id = $1 AND resource_type = $2 AND resource_id = ANY($3::text[])
"""

# The documents travel as the canonical JSON already built for the hash (serialised once);
# Postgres parses the text into jsonb, as it would parse jsonb's binary form. The hash compare
# stays as a guard, so a row changed to the same content meanwhile is still not rewritten.
_UPSERT: Final = """
INSERT INTO fhir_resources AS t
    (connection_id, resource_type, resource_id, resource, content_hash, last_updated, fetched_at)
SELECT $1, $2, r.id, convert_from(r.doc, 'UTF8')::jsonb, r.hash, r.last_updated, now()
FROM unnest($3::text[], $4::bytea[], $5::bytea[], $6::timestamptz[])
    AS r(id, doc, hash, last_updated)
ON CONFLICT (connection_id, resource_type, resource_id) DO UPDATE
SET resource = EXCLUDED.resource, content_hash = EXCLUDED.content_hash,
    last_updated = EXCLUDED.last_updated, fetched_at = EXCLUDED.fetched_at
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
"""


@dataclass(frozen=True)
class ResourceRow:
    """One resource as BB2 returned it, with the key fields already read out."""

    resource_id: str
    resource: dict[str, Any]
    last_updated: datetime
    # The canonical JSON, built once: hashed, and sent as the stored document.
    canonical: bytes = field(init=False, repr=False)
    content_hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        # Hashing a page is CPU work: build rows off the event loop (asyncio.to_thread).
        object.__setattr__(self, "canonical", canonical_json(self.resource))
        object.__setattr__(self, "content_hash", hashlib.sha256(self.canonical).digest())


@dataclass(frozen=True)
class UpsertCounts:
    """What one upsert did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def canonical_json(resource: dict[str, Any]) -> bytes:
    """The resource as JSON with sorted keys: the same bytes whatever BB2's key order.

    Storing these rather than BB2's own bytes changes nothing: jsonb keeps no key order."""
    return orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)


def unique_by_id(rows: Iterable[ResourceRow]) -> list[ResourceRow]:
    """One row per id (the last wins), in id order so concurrent batches lock alike."""
    by_id = {row.resource_id: row for row in rows}
    return [by_id[rid] for rid in sorted(by_id)]


def to_write(rows: list[ResourceRow], stored: dict[str, bytes]) -> list[ResourceRow]:
    """The rows whose content differs from what is stored (``stored``: id to hash)."""
    return [row for row in rows if stored.get(row.resource_id) != row.content_hash]


async def upsert(
    conn: Conn,
    connection_id: str,
    resource_type: str,
    resources: Iterable[ResourceRow],
) -> UpsertCounts:
    """Insert new resources, rewrite changed ones, and leave identical ones alone.

    The stored hashes are read first, so identical resources are not even sent. The counts
    follow that read: one sync writes a connection at a time (its lease), so nothing else
    inserts the page's rows in between; if something did, only the counts would be off.
    """
    rows = unique_by_id(resources)
    if not rows:
        return UpsertCounts()
    ids = [row.resource_id for row in rows]
    records = await conn.fetch(_STORED_HASHES, connection_id, resource_type, ids)
    stored = {record["resource_id"]: record["content_hash"] for record in records}
    changed = to_write(rows, stored)
    if changed:
        await conn.execute(
            _UPSERT,
            connection_id,
            resource_type,
            [row.resource_id for row in changed],
            [row.canonical for row in changed],
            [row.content_hash for row in changed],
            [row.last_updated for row in changed],
        )
    inserted = sum(1 for row in changed if row.resource_id not in stored)
    return UpsertCounts(
        inserted=inserted, updated=len(changed) - inserted, unchanged=len(rows) - len(changed)
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
