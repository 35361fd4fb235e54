"""A small connect storm through ``bbingest serve`` and two worker processes, one of them
SIGKILLed while the codes are being exchanged: no code expires waiting, and the only
losses are exchanges in flight at the kill (at most one replica's exchange concurrency),
each recorded as such. (The full-size storm, with timings, is ``make bench``.)"""

from __future__ import annotations

from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from tests.bench.storm import StormSize, run_storms
from tests.integration.conftest import settings_for
from worker.crypto import generate_key

SIZE = StormSize(
    codes=20,
    rate=10,
    replicas=2,
    exchange_concurrency=2,
    bulk=0,
    code_lifetime=20,
    lease_seconds=3,
    spread_seconds=0.5,
)


async def test_a_replica_killed_mid_storm_loses_at_most_its_exchanges_in_flight(
    pool: asyncpg.Pool, redis: Redis, tmp_path: Path
) -> None:
    settings = settings_for("http://127.0.0.1:1", generate_key(), BB_RATE_LIMIT="10")
    [figures] = await run_storms(settings, SIZE, (0.8,), tmp_path)
    assert figures.refused_503 == 0
    assert figures.expired == 0  # no code died waiting, the killed replica's included
    assert figures.lost_in_flight <= SIZE.exchange_concurrency
    assert figures.other_errors == 0
    assert figures.exchanged + figures.lost_in_flight == SIZE.codes
    assert figures.active == figures.exchanged  # every exchanged code: active, claims stored
    assert max(figures.ages) < SIZE.code_lifetime
    lost = await pool.fetch(
        "SELECT connection_id FROM code_exchanges WHERE outcome = 'lost_in_flight'"
    )
    assert len(lost) == figures.lost_in_flight  # each loss recorded as such
