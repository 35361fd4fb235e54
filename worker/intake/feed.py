"""``GET /v1/events?after=POSITION&limit=N``: the events feed, for callers that prefer to
pull. A caller sees its apps' events only (the all-apps key sees all), in commit order
(:func:`worker.store.outbox.read_after`): pass the answer's ``next`` as the next ``after``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import asyncpg
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from worker.events.envelope import envelope_of
from worker.intake.errors import ApiError, json_response
from worker.intake.routes import Endpoint, Guard, backends_of
from worker.store import outbox

FEED_PATH: Final = "/v1/events"
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000


class FeedItem(BaseModel):
    """One event and its position in the feed."""

    position: str = Field(description="This event's position: opaque, ordered.")
    event: dict[str, Any] = Field(
        description="The event's envelope, as a webhook receives it (schemas/events/)."
    )


class FeedPage(BaseModel):
    """A page of the feed."""

    events: list[FeedItem]
    next: str = Field(
        description="The position to pass as `after` next: the last event's, or `after` itself"
        " when there is nothing newer yet."
    )


def page_of(query: Mapping[str, str]) -> tuple[str, int]:
    """``after`` (``"0"``: the start) and ``limit`` of a request; 400 when either is wrong."""
    after = query.get("after", "0")
    try:
        outbox.parse_position(after)
    except outbox.BadPosition:
        raise ApiError.plain(
            400, "after: not a position this feed handed out (use 0 for the start)"
        ) from None
    limit_text = query.get("limit", str(DEFAULT_LIMIT))
    whole = limit_text.isascii() and limit_text.isdigit()  # "²" is a digit int() refuses
    if not whole or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise ApiError.plain(400, f"limit: a whole number from 1 to {MAX_LIMIT}")
    return after, int(limit_text)


def feed_endpoint(guard: Guard) -> Endpoint:
    """GET handler answering the caller's events after a position."""

    async def endpoint(request: Request) -> Response:
        caller, _ = await guard.signed_body(request)
        after, limit = page_of(request.query_params)
        apps = None if caller.apps is None else sorted(caller.apps)
        try:
            async with backends_of(request).pool.acquire() as conn:
                events = await outbox.read_after(conn, after, apps=apps, limit=limit)
        except (OSError, asyncpg.PostgresError):
            raise ApiError.plain(503, "database unavailable; retry later") from None
        items = [FeedItem(position=e.position, event=envelope_of(e)) for e in events]
        return json_response(FeedPage(events=items, next=events[-1].position if events else after))

    return endpoint
