"""The service around the endpoints: OpenAPI, health, logs, uvicorn, and ``bbingest serve``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import structlog
from redis.asyncio import Redis
from starlette.routing import Route
from structlog.testing import capture_logs

from tests.intake.conftest import (
    CONNECT_PATH,
    SECRET,
    VERIFIER,
    Connect,
    intake_settings,
    post_signed,
)
from tests.integration.conftest import DATABASE_URL, REDIS_URL
from worker.cli import main
from worker.constants import QUEUE_INTERACTIVE
from worker.intake import accesslog
from worker.intake.app import build_app
from worker.intake.backends import Backends
from worker.intake.server import intake_server
from worker.settings import Settings


async def test_openapi_describes_every_route(intake: httpx.AsyncClient) -> None:
    answer = await intake.get("/openapi.json")
    document = answer.json()
    app = build_app(intake_settings())

    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert answer.status_code == 200
    assert document["openapi"].startswith("3.1")
    assert documented == served
    assert len(served) == 7


async def test_openapi_documents_bodies_answers_and_signatures(intake: httpx.AsyncClient) -> None:
    document = (await intake.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    connect = document["paths"]["/v1/events/connect"]["post"]

    body = connect["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = schemas[body.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {
        "event_id",
        "connection_id",
        "code",
        "code_verifier",
        "redirect_uri",
    }
    assert schema["additionalProperties"] is False
    assert {"202", "200", "400", "401", "413", "415", "422"} <= set(connect["responses"])
    assert connect["security"] == [
        {"key": [], "timestamp": [], "nonce": [], "signature": []},  # v2
        {"timestamp": [], "signature": []},  # v1, until INTAKE_V1_UNTIL
    ]
    schemes = document["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {
        "X-Bbingest-Key",
        "X-Bbingest-Timestamp",
        "X-Bbingest-Nonce",
        "X-Bbingest-Signature",
    }
    for path, ops in document["paths"].items():
        for op in ops.values():
            assert bool(op["security"]) == path.startswith("/v1/"), path
            for answer in op["responses"].values():
                for media in answer.get("content", {}).values():
                    ref = media["schema"]["$ref"].rsplit("/", 1)[1]
                    assert ref in schemas


async def test_healthz_answers_when_redis_and_postgres_do(intake: httpx.AsyncClient) -> None:
    answer = await intake.get("/healthz")

    assert answer.status_code == 200
    assert answer.json() == {"redis": "ok", "postgres": "ok"}


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_healthz_is_503_when_redis_is_gone(connect_intake: Connect) -> None:
    @asynccontextmanager
    async def no_redis(settings: Settings) -> AsyncIterator[Backends]:
        gone: Redis = Redis(host="127.0.0.1", port=unused_port())
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            yield Backends(queue=gone, events=gone, pool=pool)  # type: ignore[arg-type]
        finally:
            await pool.close()
            await gone.aclose()

    client = await connect_intake(intake_settings(), no_redis)
    answer = await client.get("/healthz")

    assert answer.status_code == 503
    assert answer.json()["redis"] != "ok"


async def test_one_log_line_per_request_without_secrets(
    intake: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = {
        "event_id": "evt-log",
        "connection_id": "c1",
        "code": "the-secret-code",
        "code_verifier": VERIFIER,
        "redirect_uri": "http://localhost:3000/callback",
    }
    with capture_logs() as lines:
        # A logger made now, while capturing (the module's may be cached from before).
        monkeypatch.setattr(accesslog, "log", structlog.get_logger("test"))
        await post_signed(intake, CONNECT_PATH, event)
        await intake.get("/v1/connections/c1")

    assert [(line["route"], line["status"]) for line in lines] == [
        (CONNECT_PATH, 202),
        ("/v1/connections/{connection_id}", 401),
    ]
    assert lines[0]["event_id"] == "evt-log"
    assert lines[0]["outcome"] == "queued"
    assert all(line["duration_ms"] >= 0 for line in lines)
    assert "the-secret-code" not in repr(lines)
    assert VERIFIER not in repr(lines)


async def test_through_a_real_uvicorn_server(redis: Redis, pool: asyncpg.Pool) -> None:
    server = intake_server(intake_settings(), "127.0.0.1", 0)
    sock = socket.create_server(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=base_url) as client:
            health = await client.get("/healthz")
            queued = await post_signed(
                client, "/v1/events/unlink", {"event_id": "e-http", "connection_id": "c-http"}
            )
    finally:
        server.should_exit = True
        await task
        sock.close()

    assert health.status_code == 200
    assert queued.status_code == 202
    assert await redis.zrange(QUEUE_INTERACTIVE, 0, -1) == [b"unlink:c-http"]


async def test_serve_without_an_intake_secret_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTAKE_SECRET", "too-short")
    monkeypatch.setenv("LOG_FORMAT", "console")

    with pytest.raises(SystemExit) as exit_:
        await asyncio.to_thread(main, ["serve", "--port", str(unused_port())])

    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "INTAKE_SECRET" in err
    assert "too-short" not in err


async def test_bbingest_serve_answers_until_sigterm(redis: Redis, pool: asyncpg.Pool) -> None:
    port = unused_port()
    env = {
        **os.environ,
        "INTAKE_SECRET": SECRET,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
    }
    bbingest = Path(sys.executable).with_name("bbingest")
    process = await asyncio.create_subprocess_exec(
        bbingest, "serve", "--port", str(port), env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = await wait_for_health(client)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert health.status_code == 200
    assert process.returncode == -signal.SIGTERM  # stopped by the signal, after shutdown
    assert b"intake_stopped" in stderr


async def wait_for_health(client: httpx.AsyncClient) -> httpx.Response:
    for _ in range(200):
        try:
            return await client.get("/healthz")
        except httpx.ConnectError:
            await asyncio.sleep(0.025)
    raise AssertionError("bbingest serve did not start within 5 s")
