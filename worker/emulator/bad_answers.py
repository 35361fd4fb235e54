"""Spoiled search answers: the wrong 200s real upstreams give, made from the right one.

Only a 200 is spoiled; any other answer (401, 403, 400) goes out as it is, and the fault
is spent on it all the same.
"""

from collections.abc import AsyncIterator, Callable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from worker.emulator.faults import Fault, FaultKind
from worker.emulator.responses import FHIR_JSON

OFFSITE_HOST: Final = "evil.example.com"
# Larger than the 16 MiB a well-behaved client accepts, with room to spare.
OVERSIZE_BYTES: Final = 17 * 1024 * 1024
_PADDING: Final = b" " * (1024 * 1024)  # JSON whitespace: the oversized body stays valid
MAINTENANCE_PAGE: Final = (
    "<!DOCTYPE html>\n<html><head><title>Scheduled maintenance</title></head>\n"
    "<body><h1>Blue Button 2.0 is down for maintenance</h1>\n"
    "<p>Please try again later.</p></body></html>\n"
)

Bundle = dict[str, Any]


async def spoil(fault: Fault, request: Request, answer: Response) -> Response:
    """`answer` (a search's 200 Bundle) gone wrong the way `fault` says."""
    if answer.status_code != 200 or fault.kind is FaultKind.STATUS:
        return answer
    body = bytes(answer.body)
    if fault.kind is FaultKind.MALFORMED_JSON:
        return Response(body[: len(body) // 2], media_type=FHIR_JSON)
    if fault.kind is FaultKind.WRONG_CONTENT_TYPE:
        return HTMLResponse(MAINTENANCE_PAGE)
    if fault.kind is FaultKind.OVERSIZE:
        return _oversized(body)
    edit = _EDITS[fault.kind]
    bundle = await run_in_threadpool(orjson.loads, body)
    edit(bundle, str(request.url))
    return Response(await run_in_threadpool(orjson.dumps, bundle), media_type=FHIR_JSON)


def _without_entry(bundle: Bundle, _: str) -> None:
    """Keep `total`, lose the resources."""
    bundle.pop("entry", None)


def _without_id(bundle: Bundle, _: str) -> None:
    """The last resource of the page loses its id (a page without one is left alone)."""
    entries = bundle.get("entry") or []
    if entries:
        entries[-1]["resource"].pop("id", None)


def _next_to_itself(bundle: Bundle, url: str) -> None:
    """`next` is the very URL the client asked for."""
    _set_next(bundle, url)


def _next_offsite(bundle: Bundle, url: str) -> None:
    """`next` keeps its path and query (or the page's own), on a foreign https host."""
    parts = urlsplit(_next_url(bundle) or url)
    _set_next(bundle, urlunsplit(("https", OFFSITE_HOST, parts.path, parts.query, "")))


_EDITS: Final[dict[FaultKind, Callable[[Bundle, str], None]]] = {
    FaultKind.NO_ENTRY: _without_entry,
    FaultKind.MISSING_ID: _without_id,
    FaultKind.NEXT_LOOP: _next_to_itself,
    FaultKind.NEXT_OFFSITE: _next_offsite,
}


def _next_url(bundle: Bundle) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            return str(link["url"])
    return None


def _set_next(bundle: Bundle, url: str) -> None:
    """Point the `next` link at `url`, adding one on the last page."""
    links = [link for link in bundle.get("link", []) if link.get("relation") != "next"]
    bundle["link"] = [{"relation": "next", "url": url}, *links]


def _oversized(body: bytes) -> StreamingResponse:
    """The real Bundle, then whitespace past OVERSIZE_BYTES, streamed 1 MiB at a time."""
    chunks, tail = divmod(max(OVERSIZE_BYTES + 1 - len(body), 0), len(_PADDING))

    async def stream() -> AsyncIterator[bytes]:
        yield body
        for _ in range(chunks):
            yield _PADDING
        if tail:
            yield _PADDING[:tail]

    size = len(body) + chunks * len(_PADDING) + tail
    headers = {"Content-Length": str(size)}
    return StreamingResponse(stream(), media_type=FHIR_JSON, headers=headers)
