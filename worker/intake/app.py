"""The intake ASGI app: routes, JSON errors, the access log, and backends for its lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.intake.accesslog import AccessLog
from worker.intake.admission import ExchangeGate
from worker.intake.auth import Policy
from worker.intake.backends import OpenBackends, open_backends
from worker.intake.callers import parse_callers
from worker.intake.errors import ApiError, api_error, http_error
from worker.intake.feed import FEED_PATH, feed_endpoint
from worker.intake.openapi import openapi_document
from worker.intake.routes import Guard, routes
from worker.settings import Settings

log = structlog.get_logger(__name__)


def build_app(settings: Settings, backends: OpenBackends = open_backends) -> Starlette:
    """The app; a ConfigError now (not at the first request) when INTAKE_KEYS or
    INTAKE_SECRET is unusable.

    ``backends`` opens Redis and Postgres when the app starts and closes them when it stops.
    """
    callers = parse_callers(
        settings.intake_keys.get_secret_value(), settings.intake_secret.get_secret_value()
    )
    guard = Guard(Policy(callers, settings.intake_max_skew, settings.intake_v1_until))
    document = openapi_document()

    async def openapi(_: Request) -> Response:
        return JSONResponse(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with backends(settings) as opened:
            app.state.backends = opened
            app.state.exchange_gate = ExchangeGate.from_settings(settings)
            log.info("intake_started")
            yield
        # After the connections closed: a clean stop (uvicorn then re-raises SIGTERM/SIGINT).
        log.info("intake_stopped")

    return Starlette(
        routes=[*routes(guard, openapi), Route(FEED_PATH, feed_endpoint(guard), methods=["GET"])],
        middleware=[Middleware(AccessLog)],
        exception_handlers={ApiError: api_error, HTTPException: http_error},
        lifespan=lifespan,
    )
