"""The envelope: one shape, byte-stable for signing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from worker.events.envelope import envelope_bytes, envelope_of
from worker.store.outbox import Event

EVENT = Event(
    event_id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
    position="7.1",
    app="default",
    connection_id="c1",
    type="connection.active",
    version=1,
    data={"counts": {"Patient": 1, "ExplanationOfBenefit": 3}},
    created_at=datetime(2026, 12, 1, 3, 0, tzinfo=UTC),
)


def test_envelope_carries_identity_type_version_and_data() -> None:
    assert envelope_of(EVENT) == {
        "id": "00000000-0000-4000-8000-000000000001",
        "type": "connection.active",
        "version": 1,
        "created_at": "2026-12-01T03:00:00+00:00",
        "app": "default",
        "connection_id": "c1",
        "data": {"counts": {"Patient": 1, "ExplanationOfBenefit": 3}},
    }


def test_the_same_event_always_serialises_to_the_same_bytes() -> None:
    body = envelope_bytes(EVENT)
    assert body == envelope_bytes(EVENT)
    assert body.startswith(b'{"app":"default","connection_id":"c1","created_at"')
    assert orjson.loads(body)["data"]["counts"]["ExplanationOfBenefit"] == 3
