"""The versioned envelope every event travels in, whether POSTed to a webhook, read from
``GET /v1/events`` or sent again by a replay: one shape, built in one place.

``id`` is the event's identity for receivers' de-duplication: a redelivery carries the same
``id``; ``created_at`` is when the state change committed its event, not when it was sent."""

from __future__ import annotations

from typing import Any

import orjson

from worker.store.outbox import Event


def envelope_of(event: Event) -> dict[str, Any]:
    """The JSON object a receiver gets for ``event`` (``schemas/events/envelope.json``)."""
    return {
        "id": str(event.event_id),
        "type": event.type,
        "version": event.version,
        "created_at": event.created_at.isoformat(),
        "app": event.app,
        "connection_id": event.connection_id,
        "data": event.data,
    }


def envelope_bytes(event: Event) -> bytes:
    """The exact body that is signed and sent: compact JSON with sorted keys, so that the
    same event always serialises to the same bytes."""
    return orjson.dumps(envelope_of(event), option=orjson.OPT_SORT_KEYS)
