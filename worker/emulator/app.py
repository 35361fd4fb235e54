"""The emulator's ASGI application."""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware

from worker.emulator.admin_routes import admin_routes
from worker.emulator.authorize_routes import authorize_routes
from worker.emulator.chaos import Chaos
from worker.emulator.cms_admin_routes import cms_admin_routes
from worker.emulator.config import EmulatorConfig
from worker.emulator.context import Emulator
from worker.emulator.data import Dataset
from worker.emulator.discovery import discovery_routes
from worker.emulator.edge import EdgeThrottle
from worker.emulator.fhir_routes import fhir_routes
from worker.emulator.responses import GZIP_LEVEL
from worker.emulator.revoke_routes import revoke_routes
from worker.emulator.state import EmulatorState
from worker.emulator.stats import SlidingWindow
from worker.emulator.token_routes import token_routes


def build_app(config: EmulatorConfig, state: EmulatorState | None = None) -> Starlette:
    """A Starlette app emulating BB2 v2; pass `state` to share it or to inject a clock."""
    emulator = Emulator(
        config=config,
        state=state if state is not None else EmulatorState(),
        dataset=Dataset(config),
        limiter=SlidingWindow(
            config.rate_limit,
            config.rate_burst,
            {client.client_id: client.rate_limit for client in config.clients},
        ),
        chaos=Chaos(config),
        edge=EdgeThrottle(config.edge_rate, config.edge_retry_after),
    )
    routes = [
        *authorize_routes(emulator),
        *token_routes(emulator),
        *revoke_routes(emulator),
        *discovery_routes(emulator),
        *fhir_routes(emulator),
        *admin_routes(emulator),
        *cms_admin_routes(emulator),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(GZipMiddleware, compresslevel=GZIP_LEVEL)],
    )
