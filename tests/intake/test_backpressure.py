"""Back-pressure on connect events: a code is accepted only if it can be exchanged in time
(about rate x (lifetime - margin) codes waiting per app), and not while CMS has made the app
inactive. A refusal is a 503 with Retry-After and queues nothing."""

from __future__ import annotations

from redis.asyncio import Redis

from tests.intake.conftest import CONNECT_PATH, VERIFIER, Connect, intake_settings, post_signed
from worker.constants import APP_PAUSED_KEY, BUDGET_COOLDOWN_KEY, QUEUE_EXCHANGE


def event(index: int) -> dict[str, str]:
    return {
        "event_id": f"evt-{index}",
        "connection_id": f"c-{index}",
        "code": f"code-{index}",
        "code_verifier": VERIFIER,
        "redirect_uri": "http://localhost:3000/cb",
    }


async def test_codes_past_what_the_budget_exchanges_in_time_get_503_and_retry_after(
    redis: Redis, connect_intake: Connect
) -> None:
    # 1 request/s and a 10 s code: 1 x (10 - 5 s margin) = 5 codes can wait at once.
    client = await connect_intake(
        intake_settings(BB_RATE_LIMIT="1", BB_CODE_LIFETIME="10", BB_CLIENT_ID="cid")
    )
    for index in range(5):
        assert (await post_signed(client, CONNECT_PATH, event(index))).status_code == 202
    refused = await post_signed(client, CONNECT_PATH, event(5))
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert "in time" in refused.json()["error"]
    assert await redis.zcard(QUEUE_EXCHANGE) == 5  # nothing queued for the refused one
    # The same event, once an exchange is done, is accepted (it was not remembered).
    await redis.zrem(
        "bbingest:exchange:default:backlog",
        (await redis.zrange("bbingest:exchange:default:backlog", 0, 0))[0],
    )
    assert (await post_signed(client, CONNECT_PATH, event(5))).status_code == 202


async def test_a_429_cool_down_shrinks_what_is_accepted(
    redis: Redis, connect_intake: Connect
) -> None:
    client = await connect_intake(
        intake_settings(BB_RATE_LIMIT="1", BB_CODE_LIFETIME="10", BB_CLIENT_ID="cid")
    )
    await redis.set(BUDGET_COOLDOWN_KEY.format(client="cid"), "1", px=3000)
    for index in range(2):  # 1 x (10 - 5 - 3) = 2
        assert (await post_signed(client, CONNECT_PATH, event(index))).status_code == 202
    refused = await post_signed(client, CONNECT_PATH, event(2))
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 3  # at least the cool-down


async def test_an_app_cms_made_inactive_gets_503(redis: Redis, connect_intake: Connect) -> None:
    client = await connect_intake(intake_settings())
    await redis.set(APP_PAUSED_KEY.format(app="default"), "2026-11-30T00:00:00+00:00", px=30_000)
    refused = await post_signed(client, CONNECT_PATH, event(0))
    assert refused.status_code == 503
    assert 29 <= int(refused.headers["Retry-After"]) <= 30
    assert "inactive" in refused.json()["error"]
    assert await redis.zcard(QUEUE_EXCHANGE) == 0
