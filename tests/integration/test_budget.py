"""The shared budget against real Redis: several limiter instances, one budget."""

import asyncio

import pytest
from redis.asyncio import Redis

from worker.bluebutton.aimd import (
    DECREASE_FACTOR,
    FAST_STEP,
    HOLD_WINDOWS,
    MIN_RATE,
    PROBE_SECONDS,
    RAPID_FACTOR,
    RAPID_WINDOWS,
    SLOW_STEP,
)
from worker.bluebutton.budget import BULK, URGENT, RequestBudget
from worker.constants import BUDGET_COOLDOWN_KEY, BUDGET_SERVER_LIMIT_KEY

WINDOW = 1.0


async def grants_in_a_row(budgets: list[RequestBudget], attempts: int) -> list[float]:
    return [await budgets[i % len(budgets)].try_acquire() for i in range(attempts)]


async def test_instances_share_one_budget(redis: Redis) -> None:
    replicas = [RequestBudget(redis, "client-a", rate=5, burst=5, window=WINDOW) for _ in range(3)]
    waits = await grants_in_a_row(replicas, 8)
    assert waits[:5] == [0.0] * 5  # a burst of five across three instances
    assert all(0 < w <= WINDOW for w in waits[5:])  # then one a window, for everybody


async def test_default_burst_of_one_spaces_requests_evenly(redis: Redis) -> None:
    budget = RequestBudget(redis, "client-a", rate=10, window=WINDOW)
    assert await budget.try_acquire() == 0.0
    wait = await budget.try_acquire()
    assert 0.09 < wait <= 0.1


async def test_at_most_rate_grants_in_any_window(redis: Redis) -> None:
    """Grant times (read from Redis right after each grant) never put more than `rate` in a
    window; 20 ms are allowed for the round trip between the grant and the reading."""
    budgets = [RequestBudget(redis, "client-a", rate=10, burst=3, window=0.5) for _ in range(3)]
    granted: list[float] = []

    async def worker(budget: RequestBudget) -> None:
        for _ in range(6):
            await budget.acquire()
            seconds, micros = await redis.time()
            granted.append(seconds + micros / 1e6)

    await asyncio.gather(*(worker(b) for b in budgets))
    most = max(sum(1 for t in granted if start <= t < start + 0.48) for start in granted)
    assert most <= 10
    assert max(granted) - min(granted) >= (18 - 10) * 0.5 / 8  # and it was really throttled


async def test_budgets_are_per_client_id(redis: Redis) -> None:
    a, b = RequestBudget(redis, "client-a", rate=1), RequestBudget(redis, "client-b", rate=1)
    assert await a.try_acquire() == 0.0
    assert await b.try_acquire() == 0.0
    assert await a.try_acquire() > 0


async def test_pause_stops_every_instance_and_only_lengthens(redis: Redis) -> None:
    one = RequestBudget(redis, "client-a", rate=100)
    two = RequestBudget(redis, "client-a", rate=100)
    await one.pause(5)
    await one.pause(1)  # a shorter pause must not cut the cool-down short
    wait = await two.try_acquire()
    assert 4.5 < wait <= 5.0


def test_burst_beyond_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        RequestBudget(None, "c", rate=5, burst=6)  # type: ignore[arg-type]


async def test_a_429_lowers_the_rate_of_every_replica_once_a_hold(redis: Redis) -> None:
    one, two = (RequestBudget(redis, "client-s", rate=10, window=0.1) for _ in range(2))
    await one.slow_down()
    await two.slow_down()  # refused in the same burst: one signal, one decrease
    assert one.current_rate == 10 * DECREASE_FACTOR
    assert two.current_rate == pytest.approx(10 * DECREASE_FACTOR, abs=0.01)
    assert await two.try_acquire() == 0.0
    assert 0.1 / 10 < await two.try_acquire() <= 0.1 / 9  # spaced for 9 a window, not 10
    await asyncio.sleep(0.1 * RAPID_WINDOWS + 0.02)  # long past the hold: a new signal
    await one.slow_down()
    # (9 plus the little it regained in the meantime) times the factor again
    assert one.current_rate == pytest.approx(10 * DECREASE_FACTOR**2, abs=0.01)


async def test_refusals_soon_after_a_cut_cut_harder_and_pause_once_a_signal(
    redis: Redis,
) -> None:
    one, two = (RequestBudget(redis, "client-r", rate=10, window=0.1) for _ in range(2))
    await one.slow_down(retry_after=1.0)
    await two.slow_down(retry_after=1.5)  # the same burst: no second cut, the longer pause
    assert 1.4 < await one.try_acquire() <= 1.5
    await redis.delete(BUDGET_COOLDOWN_KEY.format(client="client-r"))
    assert two.current_rate == pytest.approx(10 * DECREASE_FACTOR, abs=0.01)
    await asyncio.sleep(0.1 * HOLD_WINDOWS + 0.02)  # past the hold, yet soon after the cut
    await two.slow_down(retry_after=0.5)
    assert two.current_rate == pytest.approx(10 * DECREASE_FACTOR * RAPID_FACTOR, abs=0.01)
    assert 0.4 < await one.try_acquire() <= 0.5


async def test_the_rate_creeps_then_grows_back_to_the_limit_and_no_further(
    redis: Redis,
) -> None:
    key = BUDGET_SERVER_LIMIT_KEY.format(client="client-s")
    budget = RequestBudget(redis, "client-s", rate=10, window=WINDOW)
    await budget.slow_down()
    cut = 10 * DECREASE_FACTOR
    assert await budget.rate() == cut
    # Move the decrease into the past (the key's remaining life is the time left to recover).
    left = await redis.pttl(key)
    await redis.pexpire(key, left - int(PROBE_SECONDS * 1000 / 2))
    creeping = await budget.rate()  # half the probe time later: the slow step
    assert creeping == pytest.approx(cut + 10 * SLOW_STEP * PROBE_SECONDS / 2, abs=0.01)
    await redis.pexpire(key, 300)  # 0.3 s before the limit: the fast step
    assert await budget.rate() == pytest.approx(10 - 10 * FAST_STEP * 0.3, abs=0.01)
    await redis.delete(key)  # as when it lapses: the limit, and no more
    assert await budget.rate() == 10.0
    await budget.try_acquire()
    assert budget.current_rate == 10.0


async def test_many_429s_never_stop_the_budget(redis: Redis) -> None:
    budget = RequestBudget(redis, "client-s", rate=2, window=0.005)
    for _ in range(40):
        await budget.slow_down()
        await asyncio.sleep(0.011)
    assert budget.current_rate == MIN_RATE


async def test_bulk_requests_yield_while_an_interactive_one_waits(redis: Redis) -> None:
    interactive = RequestBudget(redis, "client-a", rate=10, window=WINDOW)
    bulk = RequestBudget(redis, "client-a", rate=10, window=WINDOW, priority=BULK)
    assert await bulk.try_acquire() == 0.0  # nobody interactive waits: bulk goes
    assert await interactive.try_acquire("person") > 0  # the slot is taken: a person waits
    await asyncio.sleep(0.11)  # the next slot is free now...
    assert await bulk.try_acquire() > 0  # ...but bulk must leave it to the waiting person
    assert await interactive.try_acquire("person") == 0.0
    assert await bulk.try_acquire() > 0  # spaced as usual after the person's request
    await asyncio.sleep(0.11)
    assert await bulk.try_acquire() == 0.0  # no one waits any more


async def test_interactive_and_bulk_requests_yield_while_a_code_exchange_waits(
    redis: Redis,
) -> None:
    urgent = RequestBudget(redis, "client-a", rate=10, window=WINDOW, priority=URGENT)
    interactive = RequestBudget(redis, "client-a", rate=10, window=WINDOW)
    bulk = RequestBudget(redis, "client-a", rate=10, window=WINDOW, priority=BULK)
    assert await interactive.try_acquire("person") == 0.0
    assert await urgent.try_acquire("code") > 0  # the slot is taken: a code waits
    await asyncio.sleep(0.11)  # the next slot is free now...
    assert await interactive.try_acquire("person") > 0  # ...but a person's sync leaves it
    assert await bulk.try_acquire() > 0  # and so does bulk work
    assert await urgent.try_acquire("code") == 0.0  # to the code
    await asyncio.sleep(0.11)
    assert await bulk.try_acquire() > 0  # the person who waited still goes before bulk
    assert await interactive.try_acquire("person") == 0.0
