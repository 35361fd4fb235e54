"""One log line per request: route template, method, status, duration, and whatever the
endpoint noted (event id, outcome). Never a body, a header or a query: they carry codes,
verifiers and signatures."""

from __future__ import annotations

import time
from typing import Any, Final

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

# Where, in the ASGI scope, endpoints leave fields for the request's log line.
_NOTES: Final = "bbingest.log_fields"


def note(request: Request, **fields: str) -> None:
    """Add fields to the request's log line (only values safe to log: ids, outcomes)."""
    notes: dict[str, str] | None = request.scope.get(_NOTES)
    if notes is not None:
        notes.update(fields)


class AccessLog:
    """ASGI middleware writing the request's line once the response has started (or failed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; log it when it is answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        notes: dict[str, str] = {}
        scope[_NOTES] = notes
        status = 500  # what the server answers when the app raises before responding
        started = time.perf_counter()

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            _log_request(scope, status, time.perf_counter() - started, notes)


def _log_request(scope: Scope, status: int, seconds: float, notes: dict[str, str]) -> None:
    route: Any = scope.get("route")
    # The template, not the path: no connection id, and a bounded set of values.
    template = getattr(route, "path", None) or "unmatched"
    emit = log.error if status >= 500 else log.info
    emit(
        "intake_request",
        route=template,
        method=scope["method"],
        status=status,
        duration_ms=round(seconds * 1000, 1),
        **notes,
    )
