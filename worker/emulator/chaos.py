"""Seeded chaos on the FHIR views: random 5xx answers, dropped connections, slow answers."""

import gzip
import random
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from worker.emulator.config import EmulatorConfig
from worker.emulator.responses import GZIP_LEVEL

FAULT_STATUSES = (500, 502, 503, 504)


@dataclass(frozen=True)
class Fate:
    """What happens to one admitted FHIR request: a delay, then a 5xx, a drop, or its answer."""

    delay: float
    fault: int | None
    drop: bool


class Chaos:
    """Draws the fate of each admitted FHIR request from a generator seeded by the config."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        # Seeded on purpose, so that a run repeats; nothing secret is drawn.
        self._random = random.Random(config.fault_seed)  # noqa: S311

    def draw(self) -> Fate:
        """The next request's fate: it depends only on the seed and on how many came before."""
        config = self._config
        # Three draws every time, whatever the rates, so one fate never shifts the next ones.
        slow = self._random.random() < config.slow_rate
        outcome = self._random.random()
        status = self._random.choice(FAULT_STATUSES)
        faulted = outcome < config.fault_rate
        return Fate(
            delay=config.slow_seconds if slow else 0.0,
            fault=status if faulted else None,
            drop=not faulted and outcome < config.fault_rate + config.drop_rate,
        )


class DroppedResponse(Response):
    """A response whose connection is dropped after the headers and half of the body.

    The headers announce the whole body's Content-Length; returning with the body unfinished
    makes uvicorn close the connection, so the client sees the peer hang up mid-message.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the status line, the headers and half of the body, and never the rest."""
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        half = bytes(self.body[: len(self.body) // 2])
        await send({"type": "http.response.body", "body": half, "more_body": True})


async def dropped(request: Request, complete: Response) -> DroppedResponse:
    """`complete`, to be cut short.

    Encoded here when the client accepts gzip: GZipMiddleware would stream an unfinished body
    chunked, without the Content-Length, while it leaves an encoded one alone.
    """
    body, headers = bytes(complete.body), dict(complete.headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = await run_in_threadpool(gzip.compress, body, GZIP_LEVEL)
        headers.update(
            {
                "content-encoding": "gzip",
                "content-length": str(len(body)),
                "vary": "Accept-Encoding",
            }
        )
    return DroppedResponse(body, complete.status_code, headers)
