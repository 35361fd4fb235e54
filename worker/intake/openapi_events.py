"""The events' part of the intake's OpenAPI document: the ``webhooks`` section (one POST
per event type a receiver gets) and the schemas of the envelopes, all derived from the
catalog (:mod:`worker.events.catalog`, :mod:`worker.events.schemas`)."""

from __future__ import annotations

from typing import Any, Final

from worker.events.catalog import TYPES
from worker.events.schemas import envelope_schema, event_schema
from worker.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER

ENVELOPE_COMPONENT: Final = "EventEnvelope"
_DELIVERY: Final = (
    "POSTed to every endpoint registered for the event's app (`bbingest webhooks add`), at "
    "least once: a redelivery carries the same `id` (and "
    f"`{EVENT_ID_HEADER}`), so receivers dedupe on it. The events of one connection arrive "
    "in order. A 2xx answer within 10 s is success; anything else is retried with "
    "exponential backoff and jitter for at least 3 days, then dead-lettered. Check "
    f"`{SIGNATURE_HEADER}` before trusting the body, and refuse a timestamp outside your "
    "window (README, Events)."
)
_SIGNATURE: Final = (
    "`t=<unix seconds>,v1=<hex>`: v1 is the HMAC-SHA256, with the endpoint's secret, of "
    "`<t>.<raw body>`. During a secret rotation a second `,v1=<hex>` (the other secret's) "
    "follows; accept the delivery when any v1 matches."
)


def _component(name: str) -> str:
    return f"Event.{name}"


def event_components() -> dict[str, Any]:
    """The envelope's schema and each event type's, for ``components.schemas``."""
    components = {ENVELOPE_COMPONENT: _without_dialect(envelope_schema())}
    components |= {_component(t.name): _without_dialect(event_schema(t)) for t in TYPES}
    return components


def _without_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "$schema"}


def _header(name: str, description: str, schema: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": schema,
    }


def webhooks() -> dict[str, Any]:
    """The ``webhooks`` section: what a receiver gets for each event type."""
    parameters = [
        _header(EVENT_ID_HEADER, "The event's id (dedupe on it).", {"type": "string"}),
        _header(SIGNATURE_HEADER, _SIGNATURE, {"type": "string"}),
    ]
    return {
        t.name: {
            "post": {
                "operationId": "event_" + t.name.replace(".", "_"),
                "summary": t.text,
                "description": _DELIVERY,
                "parameters": parameters,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{_component(t.name)}"}
                        }
                    },
                },
                "responses": {
                    "2XX": {"description": "Received (within 10 s)."},
                    "default": {"description": "Not received: retried later."},
                },
            }
        }
        for t in TYPES
    }
