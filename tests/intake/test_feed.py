"""GET /v1/events: a caller pulls its apps' events, in commit order, page by page."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from tests.intake.conftest import Connect, intake_settings
from tests.intake.test_callers import ACME, BETA, INTAKE_KEYS
from tests.integration.event_checks import check, emitted
from worker.events.catalog import TYPES
from worker.events.emit import emit
from worker.events.schemas import data_schema
from worker.intake.auth import sign_v2
from worker.intake.callers import Caller
from worker.store import connections


async def _revoke(pool: asyncpg.Pool, connection_id: str, app: str, n: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await emit(
            conn,
            "connection.revoked",
            app=app,
            connection_id=connection_id,
            resources_deleted=n,
            revoked_at=datetime.now(UTC),
        )


@pytest.fixture
async def feed(connect_intake: Connect, pool: asyncpg.Pool, redis: Redis) -> httpx.AsyncClient:
    """An intake with the acme and beta callers, and events of both apps committed."""
    async with pool.acquire() as conn:
        for cid, app in (("c-acme", "acme"), ("c-beta", "beta")):
            await connections.create_pending(conn, cid, app)
    for n in range(3):
        await _revoke(pool, "c-acme", "acme", n)
        await _revoke(pool, "c-beta", "beta", 10 + n)
    await emitted(pool)  # the feed has caught up with every commit of the cluster
    return await connect_intake(intake_settings(INTAKE_KEYS=INTAKE_KEYS))


async def pull(client: httpx.AsyncClient, caller: Caller, **params: str | int) -> httpx.Response:
    """GET the feed (the query string is not part of the signature)."""
    headers = sign_v2(caller, "GET", "/v1/events", b"")
    return await client.get("/v1/events", params=params, headers=headers)


async def test_a_caller_pulls_its_apps_events_only_in_order_page_by_page(
    feed: httpx.AsyncClient,
) -> None:
    first = await pull(feed, ACME, limit=2)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [i["event"]["data"]["resources_deleted"] for i in page["events"]] == [0, 1]
    assert page["next"] == page["events"][-1]["position"]
    rest = (await pull(feed, ACME, after=page["next"])).json()
    assert [i["event"]["data"]["resources_deleted"] for i in rest["events"]] == [2]
    end = (await pull(feed, ACME, after=rest["next"])).json()
    assert end == {"events": [], "next": rest["next"]}
    for item in page["events"] + rest["events"]:
        check(item["event"])  # the envelope a webhook receiver gets
        assert item["event"]["app"] == "acme"
    beta = (await pull(feed, BETA)).json()
    assert {i["event"]["connection_id"] for i in beta["events"]} == {"c-beta"}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"after": "12.x"}, "after: not a position"),
        ({"after": "-1"}, "after: not a position"),
        ({"limit": 0}, "limit: a whole number"),
        ({"limit": 1001}, "limit: a whole number"),
        ({"limit": "ten"}, "limit: a whole number"),
        # Digits to str.isdigit(), not to int(): a 400 all the same, never a 500.
        ({"after": "\u00b2"}, "after: not a position"),
        ({"limit": "\u00b2"}, "limit: a whole number"),
    ],
)
async def test_a_bad_position_or_limit_is_a_clear_400(
    feed: httpx.AsyncClient, params: dict[str, str | int], error: str
) -> None:
    answer = await pull(feed, ACME, **params)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)


async def test_an_unsigned_pull_is_refused(feed: httpx.AsyncClient) -> None:
    assert (await feed.get("/v1/events")).status_code == 401


async def test_openapi_describes_each_events_webhook_from_the_catalog(
    intake: httpx.AsyncClient,
) -> None:
    document = (await intake.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert set(document["webhooks"]) == {t.name for t in TYPES}
    for event_type in TYPES:
        post = document["webhooks"][event_type.name]["post"]
        headers = [p["name"] for p in post["parameters"]]
        assert headers == ["BBIngest-Event-Id", "BBIngest-Signature"]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = schemas[ref.removeprefix("#/components/schemas/")]
        assert body["properties"]["data"] == data_schema(event_type)
        assert "2XX" in post["responses"]
    feed = document["paths"]["/v1/events"]["get"]
    page = schemas[feed["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
                   .rsplit("/", 1)[1]]  # fmt: skip
    assert page["required"] == ["events", "next"]
    item = schemas["FeedItem"]["properties"]["event"]
    assert item["$ref"] == "#/components/schemas/EventEnvelope"
    assert "EventEnvelope" in schemas
