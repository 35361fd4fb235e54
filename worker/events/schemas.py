"""The JSON Schemas of the envelope and of each event type, derived from the catalog.

Run ``make schemas``; a test fails when ``schemas/events/`` is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import orjson

from worker.events.catalog import TYPES, EventType, Field
from worker.events.reasons import REASONS

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
_DATE_TIME: Final = {"type": "string", "format": "date-time"}


def _field_schema(field: Field) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {
        "integer": {"type": "integer", "minimum": 0},
        "date-time": dict(_DATE_TIME),
        "reason": {"type": "string", "enum": sorted(REASONS)},
        "reason_text": {"type": "string"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "mode": {"type": "string", "enum": ["full", "incremental"]},
    }
    schema = kinds[field.kind]
    if field.nullable:
        schema["type"] = [schema["type"], "null"]
    return {**schema, "description": field.text}


def data_schema(event_type: EventType) -> dict[str, Any]:
    """The schema of ``event_type``'s ``data``: its declared fields, all required, no other."""
    return {
        "type": "object",
        "properties": {name: _field_schema(f) for name, f in event_type.fields.items()},
        "required": sorted(event_type.fields),
        "additionalProperties": False,
    }


def _envelope(type_schema: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": {"type": "string", "format": "uuid", "description": "The event's id: dedupe on it."},
        "type": type_schema,
        "version": version,
        "created_at": {**_DATE_TIME, "description": "When the state change committed."},
        "app": {"type": "string", "description": "The app the connection belongs to."},
        "connection_id": {
            "type": ["string", "null"],
            "description": "The connection (null for an app's events).",
        },
    }


def envelope_schema() -> dict[str, Any]:
    """The schema every event's envelope satisfies, whatever its type."""
    properties = _envelope(
        {"type": "string", "enum": [t.name for t in TYPES]}, {"type": "integer", "minimum": 1}
    )
    return {
        "$schema": DRAFT,
        "title": "envelope",
        "type": "object",
        "properties": {**properties, "data": {"type": "object"}},
        "required": sorted([*properties, "data"]),
        "additionalProperties": False,
    }


def event_schema(event_type: EventType) -> dict[str, Any]:
    """The schema of one event type's envelope, its ``data`` included."""
    properties = _envelope({"const": event_type.name}, {"const": event_type.version})
    if event_type.per_connection:
        properties["connection_id"] = {"type": "string", "description": "The connection."}
    else:
        properties["connection_id"] = {"type": "null", "description": "An app's event."}
    return {
        "$schema": DRAFT,
        "title": event_type.name,
        "description": event_type.text,
        "type": "object",
        "properties": {**properties, "data": data_schema(event_type)},
        "required": sorted([*properties, "data"]),
        "additionalProperties": False,
    }


def rendered() -> dict[str, bytes]:
    """Every schema file's name and exact bytes."""
    files = {"envelope.json": envelope_schema()}
    files |= {f"{t.name}.json": event_schema(t) for t in TYPES}
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    return {name: orjson.dumps(schema, option=option) + b"\n" for name, schema in files.items()}


def write_all(directory: Path) -> None:
    """Write every schema file into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in rendered().items():
        (directory / name).write_bytes(content)


if __name__ == "__main__":
    write_all(Path(sys.argv[1]))
