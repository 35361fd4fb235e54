"""The endpoints of the intake API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import TypeAdapter, ValidationError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.intake.accesslog import note
from worker.intake.admission import ExchangeGate
from worker.intake.auth import Unauthorized, verify
from worker.intake.backends import Backends
from worker.intake.body import decode_json, read_body
from worker.intake.errors import ApiError, invalid_payload, json_response
from worker.intake.events import accept
from worker.intake.models import EVENT_KINDS, Duplicate, EventKind, Health, Queued
from worker.jobs.payloads import ConnectionId, ExchangeJob
from worker.ops import readiness
from worker.status import load_status

Endpoint = Callable[[Request], Awaitable[Response]]
CONNECTION_PATH = "/v1/connections/{connection_id}"
_CONNECTION_ID: TypeAdapter[str] = TypeAdapter(ConnectionId)
# RFC 9110: a 401 names the scheme the client should use.
_CHALLENGE = {"WWW-Authenticate": 'Bbingest-HMAC-SHA256 realm="intake"'}


@dataclass(frozen=True)
class Guard:
    """Checks the signature of every /v1/ request with the intake key."""

    key: bytes
    max_skew: int

    async def signed_body(self, request: Request) -> bytes:
        """The raw body of a correctly signed request; 413 or 401 otherwise."""
        body = await read_body(request)
        signed = (request.method, signed_path(request), body)
        try:
            verify(self.key, request.headers, signed, max_skew=self.max_skew)
        except Unauthorized as exc:
            raise ApiError.plain(401, str(exc), headers=_CHALLENGE) from None
        return body


def signed_path(request: Request) -> str:
    """The path as the client sent it (percent-encoded, no query string): what it signed."""
    raw: bytes | None = request.scope.get("raw_path")
    if raw is None:  # optional in ASGI; the decoded path is the same for any valid id
        return request.url.path
    # Some servers keep the query string in raw_path; it is not signed.
    return raw.decode("latin-1").partition("?")[0]


def backends_of(request: Request) -> Backends:
    """The app's backends, opened by its lifespan."""
    backends: Backends = request.app.state.backends
    return backends


def event_endpoint(kind: EventKind, guard: Guard) -> Endpoint:
    """POST handler queueing one kind of event."""

    async def endpoint(request: Request) -> Response:
        data = decode_json(request, await guard.signed_body(request))
        try:
            event_id, job = kind.parse(data)
        except ValidationError as exc:
            raise invalid_payload(exc) from None
        backends = backends_of(request)
        note(request, event_id=event_id)
        try:
            if isinstance(job, ExchangeJob):
                gate: ExchangeGate = request.app.state.exchange_gate
                job = await gate.admit(backends.events, backends.pool, job)
            accepted = await accept(backends.events, backends.queue, event_id, job)
        except (RedisError, OSError):
            raise ApiError.plain(503, "queue unavailable; retry the event") from None
        note(request, outcome="queued" if accepted else "duplicate")
        if not accepted:
            return json_response(Duplicate())
        return json_response(Queued(job_id=job.job_id()), 202)

    return endpoint


def status_endpoint(guard: Guard) -> Endpoint:
    """GET handler answering a connection's status and stored counts."""

    async def endpoint(request: Request) -> Response:
        await guard.signed_body(request)
        connection_id = request.path_params["connection_id"]
        found = await _load(backends_of(request).pool, connection_id)
        if found is None:
            raise ApiError.plain(404, "unknown connection")
        return JSONResponse(found)

    return endpoint


async def _load(pool: asyncpg.Pool, connection_id: str) -> dict[str, Any] | None:
    try:
        _CONNECTION_ID.validate_python(connection_id)
    except ValidationError:
        return None  # no connection can have this id
    try:
        async with pool.acquire() as conn:
            statuses = await load_status(conn, connection_id)
    except (OSError, asyncpg.PostgresError):
        raise ApiError.plain(503, "database unavailable; retry later") from None
    return statuses[0].as_json() if statuses else None


async def healthz(request: Request) -> Response:
    """200 when Redis and Postgres answer, else 503 (no authentication: probes call it)."""
    backends = backends_of(request)
    checks = await readiness(backends.events, backends.pool)
    ready = all(state == "ok" for state in checks.values())
    return json_response(Health.model_validate(checks), 200 if ready else 503)


def routes(guard: Guard, openapi: Endpoint) -> list[Route]:
    """Every route of the API (the OpenAPI document describes each one)."""
    return [
        *(Route(k.path, event_endpoint(k, guard), methods=["POST"]) for k in EVENT_KINDS),
        Route(CONNECTION_PATH, status_endpoint(guard), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
