"""A local webhook receiver that checks signatures: for tests, ``make chaos``, the bench and
the demo. It can be made unavailable (503) or slow, or made to lose its 2xx answers after
taking a delivery (the one case where a receiver sees an event twice, with the same id)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, verify


@dataclass(frozen=True)
class Received:
    """One delivery the receiver took."""

    event_id: str
    type: str
    app: str
    connection_id: str | None
    data: dict[str, object]


@dataclass(frozen=True)
class Tally:
    """Deliveries against the events expected: distinct ones received, redeliveries,
    events never received, and events received before an earlier one of their connection."""

    delivered: int
    duplicated: int
    lost: int
    out_of_order: int


@dataclass
class Receiver:
    """The receiver's state and switches; ``secrets``: any of them verifies a delivery."""

    secrets: Sequence[str]
    available: bool = True
    delay: float = 0.0
    acks_to_lose: int = 0
    received: list[Received] = field(default_factory=list)
    refused: int = 0  # deliveries whose signature failed

    async def take(self, request: Request) -> Response:
        """The receiver's one route: verify, record, answer."""
        if not self.available:
            return Response(status_code=503)
        if self.delay:
            await asyncio.sleep(self.delay)
        body = await request.body()
        header = request.headers.get(SIGNATURE_HEADER, "")
        if not any(verify(body, header, secret, time.time()) for secret in self.secrets):
            self.refused += 1
            return Response(status_code=400)
        envelope = orjson.loads(body)
        if envelope["id"] != request.headers.get(EVENT_ID_HEADER):
            self.refused += 1
            return Response(status_code=400)
        self.received.append(
            Received(
                envelope["id"],
                envelope["type"],
                envelope["app"],
                envelope["connection_id"],
                envelope["data"],
            )
        )
        if self.acks_to_lose > 0:
            self.acks_to_lose -= 1
            return Response(status_code=500)  # taken, but the sender never learns it
        return Response(status_code=204)

    def app(self) -> Starlette:
        """The receiver as an ASGI app (POST anywhere)."""
        return Starlette(routes=[Route("/{path:path}", self.take, methods=["POST"])])

    def tally(self, expected: Mapping[str | None, Sequence[str]]) -> Tally:
        """Compare what arrived with each connection's events in order (``expected``)."""
        return tally(expected, [item.event_id for item in self.received])


def tally(expected: Mapping[str | None, Sequence[str]], arrived: Sequence[str]) -> Tally:
    """:class:`Tally` of ``arrived`` (event ids in arrival order) against ``expected``."""
    first_arrival: dict[str, int] = {}
    for position, event_id in enumerate(arrived):
        first_arrival.setdefault(event_id, position)
    wanted = {event_id for ids in expected.values() for event_id in ids}
    out_of_order = 0
    for ids in expected.values():
        seen = [first_arrival[event_id] for event_id in ids if event_id in first_arrival]
        out_of_order += sum(1 for a, b in pairwise(seen) if b < a)
    return Tally(
        delivered=len(wanted & first_arrival.keys()),
        duplicated=len(arrived) - len(first_arrival),
        lost=len(wanted - first_arrival.keys()),
        out_of_order=out_of_order,
    )
