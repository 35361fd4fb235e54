"""Several callers, each bound to its apps, signing with version 2 (nonce once)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import asyncpg
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from tests.intake.conftest import VERIFIER, Connect, intake_settings, now
from worker.constants import QUEUE_BULK, QUEUE_EXCHANGE, QUEUE_INTERACTIVE
from worker.errors import ConfigError
from worker.intake.auth import sign, sign_v2
from worker.intake.callers import Caller, parse_callers
from worker.store import connections

SECRET_A = "a" * 40
SECRET_A2 = "A" * 40
SECRET_B = "b" * 40
INTAKE_KEYS = f"acme-2026:acme:{SECRET_A},acme-2027:acme:{SECRET_A2},\nbeta:beta|gamma:{SECRET_B}"
ACME = Caller("acme-2026", SECRET_A.encode(), frozenset({"acme"}))
ACME_NEXT = Caller("acme-2027", SECRET_A2.encode(), frozenset({"acme"}))
BETA = Caller("beta", SECRET_B.encode(), frozenset({"beta", "gamma"}))


def test_intake_keys_name_callers_and_their_apps() -> None:
    callers = parse_callers(INTAKE_KEYS, "s" * 32)
    assert callers[:3] == (ACME, ACME_NEXT, BETA)
    assert callers[3].name == "default"
    assert callers[3].may_reach("anything")
    assert not ACME.may_reach("beta")
    assert "a" * 40 not in repr(callers)


@pytest.mark.parametrize(
    ("keys", "secret", "error"),
    [
        ("", "", "INTAKE_KEYS or INTAKE_SECRET"),
        ("acme:acme:short", "", "under 32"),
        ("Acme:acme:" + "x" * 32, "", "lower-case name"),
        ("acme:Bad App:" + "x" * 32, "", "app names"),
        (f"acme:acme:{'x' * 32},acme:beta:{'y' * 32}", "", "repeated"),
        ("", "short", "INTAKE_SECRET"),
    ],
)
def test_bad_intake_keys_are_named(keys: str, secret: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_callers(keys, secret)


def test_v2_signs_the_documented_canonical_string() -> None:
    body = b'{"event_id":"e","connection_id":"c"}'
    headers = sign_v2(ACME, "POST", "/v1/events/unlink", body, timestamp=1700000000, nonce="n" * 16)
    message = "\n".join(
        [
            "bbingest-v2",
            "acme-2026",
            "POST",
            "/v1/events/unlink",
            "1700000000",
            "n" * 16,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    expected = hmac.new(SECRET_A.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert headers == {
        "X-Bbingest-Key": "acme-2026",
        "X-Bbingest-Timestamp": "1700000000",
        "X-Bbingest-Nonce": "n" * 16,
        "X-Bbingest-Signature": f"v2={expected}",
    }


@pytest.fixture
async def multi(connect_intake: Connect, pool: asyncpg.Pool, redis: Redis) -> httpx.AsyncClient:
    """An intake with the three callers, and connections of acme and beta stored."""
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c-acme", "acme")
        await connections.create_pending(conn, "c-beta", "beta")
    return await connect_intake(intake_settings(INTAKE_KEYS=INTAKE_KEYS))


async def post_v2(
    client: httpx.AsyncClient, caller: Caller, path: str, payload: object, **sign_args: str
) -> httpx.Response:
    body = orjson.dumps(payload)
    headers = {"Content-Type": "application/json", **sign_v2(caller, "POST", path, body)}
    headers.update(sign_args)
    return await client.post(path, content=body, headers=headers)


async def get_v2(client: httpx.AsyncClient, caller: Caller, path: str) -> httpx.Response:
    return await client.get(path, headers=sign_v2(caller, "GET", path, b""))


async def queued(redis: Redis) -> list[bytes]:
    jobs: list[bytes] = []
    for queue in (QUEUE_EXCHANGE, QUEUE_INTERACTIVE, QUEUE_BULK):
        jobs += await redis.zrange(queue, 0, -1)
    return jobs


def connect_event(connection_id: str, app: str) -> dict[str, str]:
    return {
        "event_id": f"evt-connect-{connection_id}-{app}",
        "connection_id": connection_id,
        "code": "a-code",
        "code_verifier": VERIFIER,
        "redirect_uri": "https://app.example/callback",
        "app": app,
    }


async def test_a_caller_reads_its_apps_connections_only(
    multi: httpx.AsyncClient, redis: Redis
) -> None:
    own = await get_v2(multi, ACME, "/v1/connections/c-acme")
    other = await get_v2(multi, ACME, "/v1/connections/c-beta")
    absent = await get_v2(multi, ACME, "/v1/connections/c-none")
    rotated = await get_v2(multi, ACME_NEXT, "/v1/connections/c-acme")

    assert own.status_code == 200
    assert own.json()["app"] == "acme"
    assert rotated.status_code == 200  # both acme keys are live during a rotation
    assert other.status_code == absent.status_code == 404
    assert other.json() == absent.json() == {"error": "unknown connection"}


@pytest.mark.parametrize("kind", ["unlink", "resync"])
async def test_a_caller_cannot_unlink_or_resync_another_apps_connection(
    multi: httpx.AsyncClient, redis: Redis, kind: str
) -> None:
    path = f"/v1/events/{kind}"
    foreign = await post_v2(multi, ACME, path, {"event_id": "e1", "connection_id": "c-beta"})
    unknown = await post_v2(multi, ACME, path, {"event_id": "e2", "connection_id": "c-none"})
    own = await post_v2(multi, ACME, path, {"event_id": "e3", "connection_id": "c-acme"})

    assert foreign.status_code == unknown.status_code == 404
    assert own.status_code == 202
    assert await queued(redis) == [f"{kind}:c-acme".encode()]


async def test_a_connect_cannot_take_another_apps_connection(
    multi: httpx.AsyncClient, redis: Redis, pool: asyncpg.Pool
) -> None:
    relink = await post_v2(multi, ACME, "/v1/events/connect", connect_event("c-beta", "acme"))
    wrong_app = await post_v2(multi, ACME, "/v1/events/connect", connect_event("c-new", "beta"))
    move = await post_v2(multi, BETA, "/v1/events/connect", connect_event("c-beta", "gamma"))
    fresh = await post_v2(multi, ACME, "/v1/events/connect", connect_event("c-new", "acme"))

    assert relink.status_code == 404
    assert wrong_app.status_code == 403
    assert move.status_code == 409
    assert fresh.status_code == 202
    assert [job.split(b":")[:2] for job in await queued(redis)] == [[b"exchange", b"c-new"]]
    async with pool.acquire() as conn:
        beta = await connections.get(conn, "c-beta")
    assert beta is not None
    assert beta.app == "beta"


async def test_a_replayed_nonce_is_refused(multi: httpx.AsyncClient, redis: Redis) -> None:
    path = "/v1/connections/c-acme"
    headers = sign_v2(ACME, "GET", path, b"")
    first = await multi.get(path, headers=headers)
    replay = await multi.get(path, headers=headers)

    assert first.status_code == 200
    assert replay.status_code == 401
    assert replay.json() == {"error": "invalid signature"}


@pytest.mark.parametrize(
    ("sent_path", "sent_body"),
    [
        pytest.param(
            "/v1/events/unlink", b'{"event_id": "e1", "connection_id": "c-acme"}', id="body"
        ),
        pytest.param(
            "/v1/events/%75nlink", b'{"event_id":"e1","connection_id":"c-acme"}', id="path"
        ),
    ],
)
async def test_a_re_encoded_signed_request_is_refused(
    multi: httpx.AsyncClient, redis: Redis, sent_path: str, sent_body: bytes
) -> None:
    body = b'{"event_id":"e1","connection_id":"c-acme"}'
    headers = {"Content-Type": "application/json"}
    headers |= sign_v2(ACME, "POST", "/v1/events/unlink", body)
    answer = await multi.post(sent_path, content=sent_body, headers=headers)

    assert answer.status_code in {401, 404}  # a re-encoded path may match no route at all
    assert await queued(redis) == []


async def test_a_v2_request_needs_a_known_key_name_and_a_nonce(
    multi: httpx.AsyncClient, redis: Redis
) -> None:
    path = "/v1/connections/c-acme"
    stranger = Caller("stranger", SECRET_A.encode(), None)
    no_nonce = {k: v for k, v in sign_v2(ACME, "GET", path, b"").items() if "Nonce" not in k}

    assert (await get_v2(multi, stranger, path)).status_code == 401
    assert (await multi.get(path, headers=no_nonce)).status_code == 401


async def test_v1_works_until_its_cut_off(
    connect_intake: Connect, pool: asyncpg.Pool, redis: Redis
) -> None:
    path = "/v1/connections/c-acme"
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c-acme", "acme")
    today = datetime.fromtimestamp(now(), UTC).date().isoformat()
    before = await connect_intake(intake_settings(INTAKE_KEYS=INTAKE_KEYS))
    after = await connect_intake(intake_settings(INTAKE_KEYS=INTAKE_KEYS, INTAKE_V1_UNTIL=today))

    v1_beta = await before.get(path, headers=sign(SECRET_B.encode(), "GET", path, b""))
    v1_acme = await before.get(path, headers=sign(SECRET_A.encode(), "GET", path, b""))
    expired = await after.get(path, headers=sign(SECRET_A.encode(), "GET", path, b""))

    assert v1_acme.status_code == 200
    assert v1_beta.status_code == 404  # v1 finds the caller by its key: beta's, bound to beta
    assert expired.status_code == 401
    assert "v2" in expired.json()["error"]
