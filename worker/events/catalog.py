"""Every event type, declared once: its name, version, and what its ``data`` holds.

The JSON Schemas in ``schemas/events/`` (:mod:`worker.events.schemas`), the OpenAPI
``webhooks`` section and the check every emitted event passes (:mod:`worker.events.emit`)
are all derived from this table. ``data`` holds ids, counts, reason codes and times, never
claims or personal data: the connection and the app travel in the envelope.

A change to a type's data that a receiver could trip on (a field removed, renamed or
retyped) is a new ``version``; adding an optional field is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

FieldKind = Literal["integer", "date-time", "reason", "reason_text", "counts", "mode"]


@dataclass(frozen=True)
class Field:
    """One key of an event's ``data``."""

    kind: FieldKind
    text: str
    nullable: bool = False


@dataclass(frozen=True)
class EventType:
    """One event type: ``name`` (``<subject>.<what happened>``), its ``version`` and its
    ``data``'s fields; ``per_connection`` is False for an app's events."""

    name: str
    version: int
    text: str
    fields: Mapping[str, Field]
    per_connection: bool = True


_REASON: Final = {
    "reason": Field("reason", "Why, as a stable reason code (README, Events)."),
    "reason_text": Field("reason_text", "The reason code's human text."),
}

TYPES: Final[tuple[EventType, ...]] = (
    EventType(
        "connection.active",
        1,
        "The connection's first sync after a connect or a re-consent is done (or a sync"
        " succeeded again after an error): the beneficiary's claims are in.",
        {
            "counts": Field("counts", "Resources stored, per FHIR resource type."),
            "synced_at": Field("date-time", "When the sync finished."),
        },
    ),
    EventType(
        "connection.synced",
        1,
        "A resync of an active connection changed what is stored (no event when nothing changed).",
        {
            "mode": Field("mode", "A full pass, or the changes since the last sync."),
            "inserted": Field("integer", "Resources stored for the first time."),
            "updated": Field("integer", "Stored resources whose content changed."),
            "deleted": Field("integer", "Stored resources Blue Button no longer serves."),
            "synced_at": Field("date-time", "When the sync finished."),
        },
    ),
    EventType(
        "connection.needs_reauth",
        1,
        "Only a new authorization by the beneficiary restores access.",
        {
            **_REASON,
            "consent_expires_at": Field(
                "date-time", "When the consent given lapses (or lapsed).", nullable=True
            ),
        },
    ),
    EventType(
        "connection.consent_expiring",
        1,
        "The beneficiary's consent lapses soon (sent once per consent, WEBHOOK_CONSENT_"
        "EXPIRING_DAYS before; a re-consent arms it again).",
        {"consent_expires_at": Field("date-time", "When the consent lapses.")},
    ),
    EventType(
        "connection.error",
        1,
        "The connection failed and no retry is left; the reason says what would help.",
        dict(_REASON),
    ),
    EventType(
        "connection.revoked",
        1,
        "The connection was unlinked: its data and tokens are deleted here; ending the"
        " grant at CMS follows (connection.grant_ended).",
        {
            "resources_deleted": Field("integer", "Stored resources deleted."),
            "revoked_at": Field("date-time", "When the data was deleted."),
        },
    ),
    EventType(
        "connection.grant_ended",
        1,
        "CMS confirmed that the grant of an unlinked (or relinked) connection has ended;"
        " this may come long after connection.revoked.",
        {"ended_at": Field("date-time", "When CMS confirmed it.")},
    ),
    EventType(
        "authorization.expired",
        1,
        "An authorization code could not be exchanged in time: the beneficiary must"
        " authorize again.",
        {**_REASON, "expired_at": Field("date-time", "When the exchange was given up.")},
    ),
    EventType(
        "app.paused",
        1,
        "CMS made the app inactive: its connections wait, nobody's consent changed.",
        {"paused_at": Field("date-time", "When CMS first refused the app.")},
        per_connection=False,
    ),
    EventType(
        "app.resumed",
        1,
        "CMS serves the app again; its waiting jobs go ahead.",
        {
            "paused_at": Field("date-time", "When CMS first refused the app."),
            "resumed_at": Field("date-time", "When a request of the app was served again."),
        },
        per_connection=False,
    ),
)

BY_NAME: Final[dict[str, EventType]] = {t.name: t for t in TYPES}
