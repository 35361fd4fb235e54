"""Bad input gets a clear refusal, names the bad fields, and never echoes what was sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from tests.intake.conftest import KEY, VERIFIER, get_signed, post_signed
from worker.constants import QUEUE_BULK, QUEUE_INTERACTIVE
from worker.intake.auth import sign
from worker.intake.body import MAX_BODY_BYTES

CODE = "SECRET-CODE-never-echo-me"
SECRET_VERIFIER = "S3cretVerifier" * 4
CONNECT = {
    "event_id": "evt-1",
    "connection_id": "c1",
    "code": CODE,
    "code_verifier": VERIFIER,
    "redirect_uri": "http://localhost:3000/callback",
}


async def nothing_queued(redis: Redis) -> bool:
    queued: int = await redis.zcard(QUEUE_INTERACTIVE) + await redis.zcard(QUEUE_BULK)
    return queued == 0


@pytest.mark.parametrize(
    ("path", "payload", "fields"),
    [
        pytest.param("/v1/events/unlink", {"event_id": "e"}, ["connection_id"], id="missing"),
        pytest.param(
            "/v1/events/unlink",
            {"event_id": "e", "connection_id": "c1", "code": CODE},
            ["code"],
            id="extra field",
        ),
        pytest.param(
            "/v1/events/resync",
            {"event_id": "e", "connection_id": 12345},
            ["connection_id"],
            id="wrong type",
        ),
        pytest.param(
            "/v1/events/unlink",
            {"event_id": "e", "connection_id": "c1'; DROP TABLE connections;--"},
            ["connection_id"],
            id="sql",
        ),
        pytest.param(
            "/v1/events/unlink",
            {"event_id": "e", "connection_id": "$(rm -rf ~)`id`|&;"},
            ["connection_id"],
            id="shell",
        ),
        pytest.param(
            "/v1/events/unlink",
            {"event_id": "e v/1", "connection_id": "c1"},
            ["event_id"],
            id="bad event id",
        ),
        pytest.param("/v1/events/unlink", ["c1"], ["body"], id="not an object"),
        pytest.param(
            "/v1/events/connect",
            {**CONNECT, "code_verifier": SECRET_VERIFIER[:40], "redirect_uri": "ftp://x/" + CODE},
            ["code_verifier", "redirect_uri"],
            id="connect secrets",
        ),
        pytest.param(
            "/v1/events/connect",
            {**CONNECT, "code": 42, "event_id": None},
            ["code", "event_id"],
            id="connect types",
        ),
    ],
)
async def test_an_invalid_payload_names_its_fields_without_their_values(
    redis: Redis, intake: httpx.AsyncClient, path: str, payload: Any, fields: list[str]
) -> None:
    answer = await post_signed(intake, path, payload)

    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid payload"
    assert sorted(item["field"] for item in body["fields"]) == fields
    assert all(item["message"] for item in body["fields"])
    for secret in (CODE, SECRET_VERIFIER[:40], "DROP TABLE", "rm -rf"):
        assert secret not in answer.text
    assert await nothing_queued(redis)


async def test_a_body_over_64_kib_is_refused(redis: Redis, intake: httpx.AsyncClient) -> None:
    padded = {"event_id": "e", "connection_id": "c1", "pad": "x" * MAX_BODY_BYTES}

    answer = await post_signed(intake, "/v1/events/unlink", padded)

    assert answer.status_code == 413
    assert answer.json() == {"error": "body exceeds 64 KiB"}
    assert await nothing_queued(redis)


async def test_a_chunked_body_over_64_kib_is_cut_off(intake: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    answer = await intake.post("/v1/events/unlink", content=chunks())

    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413


async def test_a_body_of_exactly_64_kib_is_read(intake: httpx.AsyncClient) -> None:
    event = b'{"event_id": "e", "connection_id": "c1"}'
    body = event + b" " * (MAX_BODY_BYTES - len(event))

    answer = await post_signed(intake, "/v1/events/unlink", body)

    assert answer.status_code == 202


@pytest.mark.parametrize(
    ("content_type", "body", "status", "error"),
    [
        ("text/plain", b'{"event_id": "e", "connection_id": "c1"}', 415, "content type must"),
        ("application/x-www-form-urlencoded", b"event_id=e&connection_id=c1", 415, "content"),
        ("application/json", b"event_id=e&code=" + CODE.encode(), 400, "not valid JSON"),
        ("application/json", b"", 400, "not valid JSON"),
    ],
)
async def test_a_body_that_is_not_json_is_refused(
    redis: Redis,
    intake: httpx.AsyncClient,
    content_type: str,
    body: bytes,
    status: int,
    error: str,
) -> None:
    answer = await post_signed(intake, "/v1/events/unlink", body, content_type=content_type)

    assert answer.status_code == status
    assert error in answer.json()["error"]
    assert CODE not in answer.text
    assert await nothing_queued(redis)


async def test_json_with_a_charset_is_json(intake: httpx.AsyncClient) -> None:
    answer = await post_signed(
        intake,
        "/v1/events/unlink",
        {"event_id": "e", "connection_id": "c1"},
        content_type="application/json; charset=utf-8",
    )
    assert answer.status_code == 202


@pytest.mark.parametrize("connection_id", ["nobody", "bad%20id"])
async def test_an_unknown_connection_is_404(
    pool: asyncpg.Pool, intake: httpx.AsyncClient, connection_id: str
) -> None:
    answer = await get_signed(intake, f"/v1/connections/{connection_id}")

    assert answer.status_code == 404
    assert answer.json() == {"error": "unknown connection"}


async def test_unknown_routes_and_wrong_methods_answer_json(intake: httpx.AsyncClient) -> None:
    unknown = await intake.post("/v1/events/relink", headers=sign(KEY, "POST", "/v1/x", b""))
    wrong_method = await intake.get("/v1/events/connect")

    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Not Found"}
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"error": "Method Not Allowed"}
    assert wrong_method.headers["allow"] == "POST"
