"""A beneficiary with many claims is synced by narrower searches, and a sync interrupted
mid-split resumes the same searches: nothing lost, nothing stored twice, nothing re-planned."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from tests.integration.conftest import Start
from tests.integration.support import (
    authorized_job,
    emulator_post,
    fast_retries,
    served_resources,
    stored_resources,
)
from tests.integration.test_upstream_faults import run_connect
from worker.emulator.config import EmulatorConfig
from worker.local import emulator_stats
from worker.sync.ranges import SPLIT_FROM

CLAIMS = SPLIT_FROM + 200
CONFIG = EmulatorConfig(beneficiaries=1, claims_per_beneficiary=CLAIMS, part_d_share=0.9)
EOB = "ExplanationOfBenefit"


async def test_a_large_beneficiary_interrupted_mid_split_resumes_the_same_searches(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(CONFIG)
    # The 12th EOB search fails on every attempt of the first try: the job is deferred.
    order = {"status": 502, "count": 3, "search": EOB, "after": 11}
    await emulator_post(emulator.base_url, "/_emulator/faults", order)
    job = await authorized_job(emulator.base_url, 0, connection_id="split")
    services = fast_retries(services)
    assert await run_connect(services, job) == {"status": "retry"}
    running = await pool.fetchrow(
        "SELECT status, pages, cursor_type, cursor_split FROM sync_runs"
        " WHERE connection_id = 'split'"
    )
    assert (running["status"], running["cursor_type"]) == ("running", EOB)
    searches = running["cursor_split"]["searches"]
    assert len(searches) > CLAIMS // 50  # narrower than pages of the one search
    assert all(name == "service-date" for search in searches for name, _ in search)
    assert running["cursor_split"]["at"] > 0  # stopped mid-split, not at its start
    eob_stored = len([k for k in await stored_resources(pool, "split") if k[0] == EOB])
    assert 0 < eob_stored < CLAIMS  # the probe's page was not stored: ranges bring it

    assert (await run_connect(services, job, job_try=2))["status"] == "active"
    assert await stored_resources(pool, "split") == served_resources(CONFIG, 0)
    run = await pool.fetchrow(
        "SELECT status, pages, inserted, updated, cursor_split FROM sync_runs"
        " WHERE connection_id = 'split'"
    )
    assert (run["status"], run["cursor_split"]) == ("succeeded", None)
    # Every resource inserted once: no range was read twice into the store.
    assert (run["inserted"], run["updated"]) == (CLAIMS + 1 + 4, 0)
    # One probe of the unsplit search, each range's pages once (the failed one repeated):
    # the resumed run did not plan again.
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_endpoint"]["eob_search"] == 1 + (run["pages"] - 2) + 3
    assert stats["by_status"]["502"] == 3
