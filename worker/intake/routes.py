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

from worker.intake.access import Owner, Refusal, may_read, may_send
from worker.intake.accesslog import note
from worker.intake.admission import ExchangeGate
from worker.intake.auth import Policy, Unauthorized, Verified, verify
from worker.intake.backends import Backends
from worker.intake.body import decode_json, read_body
from worker.intake.callers import Caller
from worker.intake.errors import ApiError, invalid_payload, json_response
from worker.intake.events import accept
from worker.intake.models import EVENT_KINDS, Duplicate, EventKind, Health, Queued
from worker.intake.nonces import first_use
from worker.jobs.payloads import ConnectionId, ExchangeJob
from worker.ops import readiness
from worker.status import load_status
from worker.store import connections

Endpoint = Callable[[Request], Awaitable[Response]]
CONNECTION_PATH = "/v1/connections/{connection_id}"
_CONNECTION_ID: TypeAdapter[str] = TypeAdapter(ConnectionId)
# RFC 9110: a 401 names the scheme the client should use.
_CHALLENGE = {"WWW-Authenticate": 'Bbingest-HMAC-SHA256 realm="intake"'}


@dataclass(frozen=True)
class Guard:
    """Checks the signature of every /v1/ request against the callers' keys."""

    policy: Policy

    async def signed_body(self, request: Request) -> tuple[Caller, bytes]:
        """Who signed the request, and its raw body; 413, 401 (or 503) otherwise."""
        body = await read_body(request)
        signed = (request.method, signed_path(request), body)
        try:
            verified = verify(self.policy, request.headers, signed)
        except Unauthorized as exc:
            raise ApiError.plain(401, str(exc), headers=_CHALLENGE) from None
        if verified.nonce is not None and not await self._first_use(request, verified):
            raise ApiError.plain(401, "invalid signature", headers=_CHALLENGE)
        note(request, caller=verified.caller.name)
        return verified.caller, body

    async def _first_use(self, request: Request, verified: Verified) -> bool:
        assert verified.nonce is not None
        try:
            return await first_use(
                backends_of(request).events,
                verified.caller.name,
                verified.nonce,
                max_skew=self.policy.max_skew,
            )
        except (RedisError, OSError):
            raise ApiError.plain(503, "queue unavailable; retry the request") from None


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
        caller, body = await guard.signed_body(request)
        data = decode_json(request, body)
        try:
            event_id, job = kind.parse(data)
        except ValidationError as exc:
            raise invalid_payload(exc) from None
        backends = backends_of(request)
        _raise(may_send(caller, job, await _owner(backends.pool, job.connection_id)))
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
        caller, _ = await guard.signed_body(request)
        connection_id = request.path_params["connection_id"]
        found = await _load(backends_of(request).pool, connection_id)
        owner = None if found is None else Owner(app=found["app"], status=found["status"])
        _raise(may_read(caller, owner))
        return JSONResponse(found)

    return endpoint


def _raise(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise ApiError.plain(refusal.status, refusal.message)


async def _owner(pool: asyncpg.Pool, connection_id: str) -> Owner | None:
    """The app and status of the stored connection (None when there is none)."""
    try:
        async with pool.acquire() as conn:
            found = await connections.get(conn, connection_id)
    except (OSError, asyncpg.PostgresError):
        raise ApiError.plain(503, "database unavailable; retry later") from None
    return None if found is None else Owner(app=found.app, status=found.status)


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
