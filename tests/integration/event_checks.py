"""Every event a test emitted, checked against its JSON Schema in ``schemas/events/``."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from jsonschema import Draft202012Validator, FormatChecker

from worker.events.envelope import envelope_of
from worker.store import outbox

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "events"


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of ``schemas/events/<name>.json``."""
    schema = orjson.loads((SCHEMAS / f"{name}.json").read_bytes())
    return Draft202012Validator(schema, format_checker=FormatChecker())


def check(envelope: dict[str, Any]) -> None:
    """Raise unless ``envelope`` satisfies the envelope's schema and its type's."""
    validator("envelope").validate(envelope)
    validator(envelope["type"]).validate(envelope)


async def emitted(pool: asyncpg.Pool, connection_id: str | None = None) -> list[dict[str, Any]]:
    """The envelopes of every committed event (of one connection), in commit order, each
    checked against its schema. Read through the feed, which waits for every transaction
    of the cluster that could still commit an earlier position (another database's too)."""
    async with pool.acquire() as conn:
        committed = await conn.fetchval("SELECT count(*) FROM events")
        events = await outbox.read_after(conn, "0", apps=None, limit=10**6)
        for _ in range(600):
            if len(events) >= committed:
                break
            await asyncio.sleep(0.05)
            events = await outbox.read_after(conn, "0", apps=None, limit=10**6)
    assert len(events) == committed, "the feed never caught up with the committed events"
    envelopes = [envelope_of(e) for e in events]
    for envelope in envelopes:
        check(envelope)
    return [e for e in envelopes if connection_id is None or e["connection_id"] == connection_id]
