"""Reading a request body: bounded in size, then JSON, then a validated event."""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.requests import Request

from worker.intake.errors import ApiError

MAX_BODY_BYTES: Final = 64 * 1024
JSON_MEDIA_TYPE: Final = "application/json"


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, or a 413 as soon as it exceeds ``limit`` (never buffered past it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    # A chunked or lying client is cut off by counting what actually arrives.
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def decode_json(request: Request, body: bytes) -> Any:
    """The decoded JSON body: 415 for another content type, 400 when it is not JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise ApiError.plain(415, f"content type must be {JSON_MEDIA_TYPE}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson's message quotes the document: say only that it is not JSON.
        raise ApiError.plain(400, "body is not valid JSON") from None


def _too_large(limit: int) -> ApiError:
    return ApiError.plain(413, f"body exceeds {limit // 1024} KiB")
