"""Serving the intake app with uvicorn (``bbingest serve``)."""

from __future__ import annotations

import structlog
import uvicorn

from worker.intake.app import build_app
from worker.settings import Settings

log = structlog.get_logger(__name__)

_GRACEFUL_SHUTDOWN_SECONDS = 10


def intake_server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for the intake app (ConfigError first if INTAKE_SECRET is unusable)."""
    config = uvicorn.Config(
        build_app(settings),
        host=host,
        port=port,
        lifespan="on",  # the app's Redis and Postgres connections open and close with it
        access_log=False,  # the app logs each request itself, without query strings
        log_config=None,  # keep configure_logging's set-up
        server_header=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
    )
    return uvicorn.Server(config)


async def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT.

    Like uvicorn.run, a caught signal is raised again after a clean shutdown; a failed
    start-up (Redis or Postgres unreachable, port taken) logs why and exits with status 3.
    """
    server = intake_server(settings, host, port)
    log.info("intake_starting", host=host, port=port)
    await server.serve()
