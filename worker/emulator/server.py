"""Serving the emulator: for the CLI, and in-process for tests and the demo."""

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from worker.emulator.app import build_app
from worker.emulator.config import EmulatorConfig
from worker.emulator.state import EmulatorState

_log = logging.getLogger("uvicorn.error")
_STARTUP_POLL_SECONDS = 0.005
_GRACEFUL_SHUTDOWN_SECONDS = 2
_UNFINISHED_RESPONSE = "ASGI callable returned without completing response."


@dataclass(frozen=True)
class RunningEmulator:
    """A live emulator: where it listens and its state (stats, tokens, clock)."""

    base_url: str
    state: EmulatorState
    config: EmulatorConfig


async def serve(config: EmulatorConfig, host: str, port: int) -> None:
    """Serve the emulator until Ctrl+C or SIGTERM.

    Like uvicorn.run, it re-raises a caught SIGINT after a clean shutdown, so callers see
    KeyboardInterrupt.
    """
    server = uvicorn.Server(_uvicorn_config(build_app(config), log_level="info"))
    sock = _bind(host, port)
    _log.info("Blue Button 2.0 emulator listening on %s", _url(sock))
    try:
        with _drops_unlogged(config):
            await server.serve(sockets=[sock])
    finally:
        sock.close()


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    state: EmulatorState | None = None,
) -> AsyncIterator[RunningEmulator]:
    """Run the emulator in this event loop; port 0 picks a free port (see `.base_url`)."""
    state = state if state is not None else EmulatorState()
    with _drops_unlogged(config):
        async with serving(build_app(config, state), host, port) as base_url:
            yield RunningEmulator(base_url=base_url, state=state, config=config)


@asynccontextmanager
async def serving(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop while inside; yields its base URL (port 0 picks a
    free port). The emulator and the local webhook receiver run this way."""
    server = uvicorn.Server(_uvicorn_config(app, log_level="warning"))
    sock = _bind(host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(_STARTUP_POLL_SECONDS)
        yield _url(sock)
    finally:
        server.should_exit = True
        await task
        sock.close()


class _DeliberateDrops(logging.Filter):
    """Hides uvicorn's error about an unfinished response: with a drop_rate, the emulator leaves
    responses unfinished on purpose (and counts them as "dropped")."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but that one."""
        return record.getMessage() != _UNFINISHED_RESPONSE


@contextmanager
def _drops_unlogged(config: EmulatorConfig) -> Iterator[None]:
    """While a server with a drop_rate runs, its deliberate drops are not reported as errors."""
    deliberate = _DeliberateDrops()
    if config.drop_rate > 0:
        _log.addFilter(deliberate)
    try:
        yield
    finally:
        _log.removeFilter(deliberate)


def _uvicorn_config(app: Starlette, *, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
    )


def _bind(host: str, port: int) -> socket.socket:
    """Bind first, so that port 0 becomes a known port before the server starts."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host, port), family=family)
    # asyncio sets TCP_NODELAY only on sockets made with proto=IPPROTO_TCP, which this one is
    # not; accepted connections inherit it from here. Without it, Nagle's algorithm and the
    # client's delayed ACK hold each response's body about 40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
