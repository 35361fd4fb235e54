"""The OpenAPI 3.1 document of the intake API, built from the models that validate requests
and shape answers."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel

from worker.intake.auth import KEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from worker.intake.body import MAX_BODY_BYTES
from worker.intake.feed import FEED_PATH, MAX_LIMIT, FeedPage
from worker.intake.models import (
    EVENT_KINDS,
    ConnectionStatusBody,
    Duplicate,
    ErrorBody,
    EventKind,
    Health,
    InvalidPayload,
    Queued,
)
from worker.intake.openapi_events import ENVELOPE_COMPONENT, event_components, webhooks
from worker.intake.routes import CONNECTION_PATH

_REF: Final = "#/components/schemas/{model}"
# Alternatives: signature v2 (key name and nonce too), or v1 until INTAKE_V1_UNTIL.
_SIGNED: Final[list[dict[str, list[str]]]] = [
    {"key": [], "timestamp": [], "nonce": [], "signature": []},
    {"timestamp": [], "signature": []},
]
_SIGNING: Final = (
    f"Every /v1/ request is signed. Version 2: `{KEY_HEADER}: <key name>`, "
    f"`{TIMESTAMP_HEADER}: <unix seconds>`, `{NONCE_HEADER}: <16-64 of [A-Za-z0-9_-], fresh "
    f"per request>` and `{SIGNATURE_HEADER}: v2=<hex>`, the HMAC-SHA256 with that key's secret "
    "(INTAKE_KEYS) of the lines `bbingest-v2`, key name, METHOD, path (exactly as sent, "
    "percent-encoded, without the query string), timestamp, nonce and the hex sha256 of the "
    "raw body (empty for GET), joined by newlines. A nonce is accepted once. Version 1 "
    f"(until INTAKE_V1_UNTIL): `{SIGNATURE_HEADER}: sha256=<hex>` over "
    '`f"{timestamp}.{METHOD}.{path}.".encode() + raw_body`. The timestamp must be within '
    "INTAKE_MAX_SKEW seconds (default 300) of the server's clock. A caller reaches only its "
    "apps' connections: any other answers 404."
)


_QUEUE_DOWN = "Redis unavailable: retry the same event."
# A connect event's code must be exchanged within its minute: refused when it cannot be.
_UNAVAILABLE = {
    "connect": _QUEUE_DOWN + " Or the code could not be exchanged in time (too many codes"
    " waiting, a 429 cool-down, the app inactive at CMS): Retry-After says when to send"
    " the person's next authorization.",
}


class _Schemas:
    """Collects component schemas; hands out references to them."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(
        self, model: type[BaseModel], mode: Literal["validation", "serialization"]
    ) -> dict[str, str]:
        """A reference to ``model``'s schema, adding it (and its nested models) once."""
        schema = model.model_json_schema(ref_template=_REF, mode=mode)
        self.components.update(schema.pop("$defs", {}))
        self.components[model.__name__] = schema
        return {"$ref": _REF.format(model=model.__name__)}

    def answer(self, description: str, model: type[BaseModel]) -> dict[str, Any]:
        """A response object with a JSON body."""
        schema = self.ref(model, "serialization")
        return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    """The whole document, as the ``/openapi.json`` endpoint serves it."""
    schemas = _Schemas()
    paths: dict[str, Any] = {k.path: {"post": _event_operation(k, schemas)} for k in EVENT_KINDS}
    paths[CONNECTION_PATH] = {"get": _status_operation(schemas)}
    paths[FEED_PATH] = {"get": _feed_operation(schemas)}
    schemas.components.update(event_components())
    # A feed item's event is the envelope whose schema the webhooks use too.
    item = schemas.components["FeedItem"]["properties"]["event"]
    item["$ref"] = f"#/components/schemas/{ENVELOPE_COMPONENT}"
    paths["/healthz"] = {"get": _health_operation(schemas)}
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1 document"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bluebutton-ingest intake",
            "version": "1.0.0",
            "description": "Signed connect / unlink / resync events, queued as jobs; the events"
            " of connections and apps, pulled (GET /v1/events) or received as webhooks. "
            + _SIGNING,
        },
        "paths": paths,
        "webhooks": webhooks(),
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "key": _header_scheme(KEY_HEADER, "v2: the caller's key name (INTAKE_KEYS)."),
                "timestamp": _header_scheme(TIMESTAMP_HEADER, "Unix seconds of the request."),
                "nonce": _header_scheme(NONCE_HEADER, "v2: fresh per request, accepted once."),
                "signature": _header_scheme(SIGNATURE_HEADER, _SIGNING),
            },
        },
    }


def _header_scheme(name: str, description: str) -> dict[str, str]:
    return {"type": "apiKey", "in": "header", "name": name, "description": description}


def _event_operation(kind: EventKind, schemas: _Schemas) -> dict[str, Any]:
    error = ErrorBody
    body = schemas.ref(kind.event_model, "validation")
    return {
        "operationId": f"{kind.name}Event",
        "summary": (kind.event_model.__doc__ or "").strip(),
        "security": _SIGNED,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body}},
        },
        "responses": {
            "202": schemas.answer("Queued (event ids are remembered 7 days).", Queued),
            "200": schemas.answer("This event id was already accepted; nothing queued.", Duplicate),
            "400": schemas.answer("The body is not JSON.", error),
            "401": schemas.answer("Signature missing or invalid (or timestamp too far).", error),
            "413": schemas.answer(f"Body over {MAX_BODY_BYTES // 1024} KiB.", error),
            "415": schemas.answer("Content type is not application/json.", error),
            "422": schemas.answer("Invalid fields (values are never echoed).", InvalidPayload),
            "503": schemas.answer(_UNAVAILABLE.get(kind.name, _QUEUE_DOWN), error),
        },
    }


def _status_operation(schemas: _Schemas) -> dict[str, Any]:
    return {
        "operationId": "getConnection",
        "summary": "A connection's status and stored resource counts.",
        "security": _SIGNED,
        "parameters": [
            {"name": "connection_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            "200": schemas.answer("The connection.", ConnectionStatusBody),
            "401": schemas.answer("Signature missing or invalid.", ErrorBody),
            "404": schemas.answer("Unknown connection.", ErrorBody),
            "503": schemas.answer("Postgres unavailable.", ErrorBody),
        },
    }


def _feed_operation(schemas: _Schemas) -> dict[str, Any]:
    return {
        "operationId": "getEvents",
        "summary": "The caller's apps' events after a position, in commit order (README, Events).",
        "security": _SIGNED,
        "parameters": [
            {
                "name": "after",
                "in": "query",
                "description": "A position this feed handed out (`next`); 0, the default, is the"
                " start.",
                "schema": {"type": "string", "default": "0"},
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
            },
        ],
        "responses": {
            "200": schemas.answer("Events, oldest first, and the next position.", FeedPage),
            "400": schemas.answer("`after` or `limit` is not valid.", ErrorBody),
            "401": schemas.answer("Signature missing or invalid.", ErrorBody),
            "503": schemas.answer("Postgres unavailable.", ErrorBody),
        },
    }


def _health_operation(schemas: _Schemas) -> dict[str, Any]:
    return {
        "operationId": "health",
        "summary": "Readiness: Redis and Postgres answer (no authentication).",
        "security": [],
        "responses": {
            "200": schemas.answer("Ready.", Health),
            "503": schemas.answer("A dependency does not answer.", Health),
        },
    }
