"""``bbingest sandbox-connect``: authorize one real sandbox user and queue the connect job.

For a developer holding real BB2 sandbox credentials: serves the callback on
``http://localhost:3000/api/auth/smart/callback`` (the redirect URI the CMS guide
registers), prints the authorize URL with a fresh PKCE pair and a 32-byte random state,
checks the state that comes back, and queues the connect job with the code.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable, Mapping
from typing import Final

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from worker.apps import default_app
from worker.bluebutton import oauth
from worker.jobs.payloads import ConnectJob
from worker.jobs.queue import enqueue, open_queue
from worker.settings import Settings

CALLBACK_PATH: Final = "/api/auth/smart/callback"
WAIT_SECONDS: Final = 600.0


class CallbackError(Exception):
    """The redirect back from BB2 did not carry a usable code."""


def code_from_callback(query: Mapping[str, str], expected_state: str) -> str:
    """The authorization code of a callback whose state matches ours."""
    if not secrets.compare_digest(query.get("state", ""), expected_state):
        raise CallbackError("the state does not match: this callback is not ours")
    if "error" in query:
        raise CallbackError(f"authorization refused: {query['error'][:100]}")
    code = query.get("code", "")
    if not code:
        raise CallbackError("the callback carries no code")
    return code


async def _wait_for_callback(port: int, state: str) -> str:
    """Serve the callback on localhost:``port`` until BB2 redirects back; returns the code."""
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def callback(request: Request) -> HTMLResponse:
        try:
            code = code_from_callback(request.query_params, state)
        except CallbackError as exc:
            if not outcome.done():
                outcome.set_exception(exc)
            return HTMLResponse(f"<p>Not connected: {exc}.</p>", status_code=400)
        if not outcome.done():
            outcome.set_result(code)
        return HTMLResponse("<p>Connected. You can close this window.</p>")

    app = Starlette(routes=[Route(CALLBACK_PATH, callback)])
    sock = socket.create_server(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        return await outcome
    finally:
        server.should_exit = True
        await serving
        sock.close()


async def run_sandbox_connect(
    settings: Settings,
    *,
    connection_id: str,
    port: int,
    announce: Callable[[str], None] = print,
) -> int:
    """Print the authorize URL, wait for the redirect, and queue the connect job."""
    client_id = default_app(settings).client_id
    redirect_uri = f"http://localhost:{port}{CALLBACK_PATH}"
    pkce, state = oauth.make_pkce(), oauth.make_state()
    url = oauth.authorize_url(
        settings.bb_base_url,
        client_id=client_id,
        redirect_uri=redirect_uri,
        state=state,
        challenge=pkce.challenge,
    )
    announce(f"Open this URL, log in (sandbox users: BBUser00000 / PW00000!) and allow:\n{url}")
    async with asyncio.timeout(WAIT_SECONDS):
        code = await _wait_for_callback(port, state)
    job = ConnectJob(
        connection_id=connection_id,
        code=code,
        code_verifier=pkce.verifier,
        redirect_uri=redirect_uri,
    )
    queue = await open_queue(settings.redis_url)
    try:
        await enqueue(queue, job)
    finally:
        await queue.aclose()
    announce(f"queued connect for {connection_id}; run `bbingest worker --burst` to fetch")
    return 0
