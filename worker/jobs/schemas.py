"""Writes the JSON Schema of every job payload, for enqueuers in other languages.

Run ``make schemas``; a test fails when ``schemas/jobs/`` is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from worker.jobs.payloads import JobPayload
from worker.jobs.spec import SPECS

PAYLOADS: dict[str, type[JobPayload]] = {spec.name: spec.payload for spec in SPECS}


def _schema_of(job: str) -> dict[str, Any]:
    """The JSON Schema of one job's keyword arguments."""
    schema = PAYLOADS[job].model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": job, **schema}


def render(job: str) -> bytes:
    """The schema file's exact bytes."""
    return orjson.dumps(_schema_of(job), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _write_all(directory: Path) -> None:
    """Write ``<job>.schema.json`` for every job into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for job in PAYLOADS:
        (directory / f"{job}.schema.json").write_bytes(render(job))


if __name__ == "__main__":
    _write_all(Path(sys.argv[1]))
