"""Every /v1/ route needs a fresh HMAC-SHA256 signature of exactly what was sent."""

from __future__ import annotations

import hashlib
import hmac

import asyncpg
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from tests.intake.conftest import KEY, SECRET, now, post_signed
from worker.constants import QUEUE_INTERACTIVE
from worker.intake.auth import sign

PATH = "/v1/events/unlink"
EVENT = {"event_id": "evt-1", "connection_id": "c1"}
MAX_SKEW = 300  # INTAKE_MAX_SKEW's default


def test_sign_computes_the_documented_scheme() -> None:
    body = b'{"event_id":"e","connection_id":"c"}'
    message = b"1700000000.POST./v1/events/unlink." + body
    expected = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()

    assert sign(KEY, "POST", PATH, body, 1700000000) == {
        "X-Bbingest-Timestamp": "1700000000",
        "X-Bbingest-Signature": f"sha256={expected}",
    }


async def post_with(
    client: httpx.AsyncClient, headers: dict[str, str], body: bytes, path: str = PATH
) -> httpx.Response:
    return await client.post(
        path, content=body, headers={"Content-Type": "application/json", **headers}
    )


def signed(body: bytes, **overrides: str) -> dict[str, str]:
    return {**sign(KEY, "POST", PATH, body), **overrides}


BODY = orjson.dumps(EVENT)


@pytest.mark.parametrize(
    ("headers", "body", "error"),
    [
        pytest.param({}, BODY, "missing signature", id="no headers"),
        pytest.param(
            {"X-Bbingest-Signature": signed(BODY)["X-Bbingest-Signature"]},
            BODY,
            "missing signature",
            id="no timestamp",
        ),
        pytest.param(
            sign(b"another-secret-of-at-least-32-chars!", "POST", PATH, BODY),
            BODY,
            "invalid signature",
            id="other key",
        ),
        pytest.param(
            signed(BODY, **{"X-Bbingest-Signature": "sha256=zz"}),
            BODY,
            "invalid signature",
            id="malformed",
        ),
        pytest.param(
            signed(BODY, **{"X-Bbingest-Timestamp": "soon"}),
            BODY,
            "invalid signature",
            id="timestamp not a number",
        ),
        pytest.param(
            signed(BODY), BODY.replace(b"c1", b"c2"), "invalid signature", id="body tampered"
        ),
        pytest.param(
            sign(KEY, "POST", "/v1/events/resync", BODY), BODY, "invalid signature", id="other path"
        ),
        pytest.param(sign(KEY, "GET", PATH, BODY), BODY, "invalid signature", id="other method"),
    ],
)
async def test_a_request_without_a_valid_signature_is_refused_and_queues_nothing(
    redis: Redis, intake: httpx.AsyncClient, headers: dict[str, str], body: bytes, error: str
) -> None:
    answer = await post_with(intake, headers, body)

    assert answer.status_code == 401
    assert answer.json() == {"error": error}
    assert answer.headers["WWW-Authenticate"].startswith("Bbingest-HMAC-SHA256")
    assert await redis.zcard(QUEUE_INTERACTIVE) == 0


@pytest.mark.parametrize(
    ("offset", "status"),
    [(-MAX_SKEW - 5, 401), (MAX_SKEW + 5, 401), (-MAX_SKEW + 5, 202), (MAX_SKEW - 5, 202)],
)
async def test_a_timestamp_beyond_the_allowed_skew_is_refused(
    redis: Redis, intake: httpx.AsyncClient, offset: int, status: int
) -> None:
    answer = await post_signed(intake, PATH, EVENT, timestamp=now() + offset)

    assert answer.status_code == status
    assert await redis.zcard(QUEUE_INTERACTIVE) == (1 if status == 202 else 0)


async def test_reading_a_connection_needs_a_signature_too(
    pool: asyncpg.Pool, intake: httpx.AsyncClient
) -> None:
    path = "/v1/connections/c1"
    unsigned = await intake.get(path)
    signed_for_other = await intake.get(path, headers=sign(KEY, "GET", "/v1/connections/c2", b""))

    assert unsigned.status_code == 401
    assert unsigned.json() == {"error": "missing signature"}
    assert signed_for_other.status_code == 401
    assert (await intake.get(path, headers=sign(KEY, "GET", path, b""))).status_code == 404
