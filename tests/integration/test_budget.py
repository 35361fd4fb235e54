"""The shared budget against real Redis: several limiter instances, one budget."""

import asyncio

from redis.asyncio import Redis

from worker.bluebutton.budget import RequestBudget


async def test_instances_share_one_sliding_window(redis: Redis) -> None:
    replicas = [RequestBudget(redis, "client-a", rate=5) for _ in range(3)]
    waits = [await replicas[i % 3].try_acquire() for i in range(8)]
    assert waits[:5] == [0.0] * 5  # five grants across three instances
    assert all(w > 0 for w in waits[5:])  # then everybody waits
    assert all(w <= 1.03 for w in waits[5:])


async def test_budgets_are_per_client_id(redis: Redis) -> None:
    a, b = RequestBudget(redis, "client-a", rate=1), RequestBudget(redis, "client-b", rate=1)
    assert await a.try_acquire() == 0.0
    assert await b.try_acquire() == 0.0
    assert await a.try_acquire() > 0


async def test_pause_stops_every_instance_and_only_lengthens(redis: Redis) -> None:
    one, two = (
        RequestBudget(redis, "client-a", rate=100),
        RequestBudget(redis, "client-a", rate=100),
    )
    await one.pause(5)
    await one.pause(1)  # a shorter pause must not cut the cool-down short
    wait = await two.try_acquire()
    assert 4.5 < wait <= 5.0


async def test_acquire_waits_out_the_window(redis: Redis) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    budget = RequestBudget(redis, "client-a", rate=2, window=0.2, sleep=fake_sleep)
    for _ in range(4):
        await budget.acquire()
    assert len(slept) >= 1  # the third grant had to wait for the window to slide
    assert await redis.zcard("bbingest:budget:client-a:log") <= 2
