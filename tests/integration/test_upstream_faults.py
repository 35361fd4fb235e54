"""Upstream faults end to end: BB2 answers 5xx bursts and wrong 200s on the 2nd EOB page.

A short 5xx burst is absorbed by the in-job retries; a lasting one defers the job, then
ends in ``error`` on the last try. Every wrong 200 is a ProtocolError: the connection ends
in ``error`` with the reason, the pages before the bad one stay stored, the run is failed,
and the job returns (no other exception escapes, nothing is retried in vain).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from arq import Retry
from redis.asyncio import Redis

from tests.integration.conftest import Start
from tests.integration.support import (
    Key,
    authorized_job,
    emulator_post,
    fast_retries,
    http_of,
    served_resources,
    stored_resources,
)
from worker.constants import JOB_MAX_TRIES, MAX_RESPONSE_BYTES
from worker.emulator.bad_answers import OFFSITE_HOST, OVERSIZE_BYTES
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import RunningEmulator
from worker.jobs.connect import connect
from worker.jobs.payloads import ConnectJob
from worker.local import (
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    worker_environment,
)
from worker.runtime.services import Services

Setup = tuple[RunningEmulator, ConnectJob, Services]
EOB = "ExplanationOfBenefit"
# BBUser00000 with 140 claims: Patient, Coverage, then EOB pages of 50, 50 and 40.
CONFIG = EmulatorConfig(beneficiaries=1, claims_per_beneficiary=140)
SECOND_EOB_PAGE = {"search": EOB, "after": 1}
# What each wrong 200 on a page makes the worker say, and how many EOB pages it stores
# first: a bad page is refused whole; a bad next link only once its page is stored.
REFUSALS = {
    "malformed_json": ("search Bundle is not valid JSON", 1),
    "no_entry": ("Bundle says total 140 but has no entries", 1),
    "wrong_content_type": ("expected JSON from BB2, got content type 'text/html'", 1),
    "next_loop": (f"{EOB} next link repeats a page", 2),
    "next_offsite": ("BB2 link leaves the configured base URL", 2),
    "oversize": ("too large", 1),
    "missing_id": (f"a {EOB} has no usable id", 1),
}


class Sent:
    """Every URL the worker's HTTP client sends a request to."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.urls: list[str] = []
        http.event_hooks["request"].append(self._record)

    async def _record(self, request: httpx.Request) -> None:
        self.urls.append(str(request.url))

    def hosts(self) -> set[str]:
        return {urlsplit(url).netloc for url in self.urls}


async def run_connect(services: Services, job: ConnectJob, job_try: int = 1) -> dict[str, Any]:
    """The job as arq runs it; a Retry comes back as {"status": "retry"}, anything else
    but a returned result fails the test."""
    ctx = {"services": services, "job_try": job_try}
    try:
        return await connect(ctx, **job.model_dump())
    except Retry:
        return {"status": "retry"}


async def setup(start: Start, connection_id: str, order: dict[str, Any]) -> Setup:
    """An emulator with `order` queued, BBUser00000's connect job as `connection_id`, and
    services with fast retries."""
    emulator, _, services = await start(CONFIG)
    answer = await emulator_post(emulator.base_url, "/_emulator/faults", order)
    assert answer["pending"] == order.get("count", 1)
    job = await authorized_job(emulator.base_url, 0, connection_id=connection_id)
    return emulator, job, fast_retries(services)


def first_pages(pages: int, *, coverage: bool = True) -> dict[Key, Any]:
    """Patient, Coverage (unless told) and the first `pages` EOB pages BBUser00000 is served."""
    served = served_resources(CONFIG, 0)
    eobs = set([key for key in served if key[0] == EOB][: pages * 50])
    kept = {key for key in served if key[0] == "Patient" or (coverage and key[0] == "Coverage")}
    return {key: value for key, value in served.items() if key in kept or key in eobs}


async def connection(pool: asyncpg.Pool, connection_id: str) -> asyncpg.Record:
    found = await pool.fetchrow(
        "SELECT status, last_error FROM connections WHERE connection_id = $1", connection_id
    )
    assert found is not None
    return found


async def runs(pool: asyncpg.Pool, connection_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT status, error, pages, cursor_url FROM sync_runs WHERE connection_id = $1"
        " ORDER BY run_id",
        connection_id,
    )


@pytest.mark.parametrize("order", [{"status": 502, **SECOND_EOB_PAGE}, {"status": 503, "after": 3}])
async def test_a_5xx_burst_shorter_than_the_retries_ends_active_with_everything(
    pool: asyncpg.Pool, redis: Redis, start: Start, order: dict[str, Any]
) -> None:
    # Two 5xx in a row on the 2nd EOB page (counted among EOB searches, or among all
    # FHIR requests: Patient, Coverage, EOB page 1 pass), three attempts per request.
    emulator, job, services = await setup(start, "uf-burst", {**order, "count": 2})
    assert await run_connect(services, job) == {
        "status": "active",
        "pages": 5,
        "resources": 1 + 4 + 140,
    }
    assert (await connection(pool, "uf-burst"))["status"] == "active"
    assert await stored_resources(pool, "uf-burst") == served_resources(CONFIG, 0)
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_endpoint"]["eob_search"] == 3 + 2
    assert stats["by_status"][str(order["status"])] == 2
    assert emulator.state.pending_faults() == 0


async def test_a_lasting_5xx_defers_the_job_then_ends_in_a_recorded_error(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # Every attempt of both tries fails: 3 attempts per request, 2 tries.
    order = {"status": 504, "count": 6, **SECOND_EOB_PAGE}
    emulator, job, services = await setup(start, "uf-5xx", order)
    assert await run_connect(services, job) == {"status": "retry"}
    [running] = await runs(pool, "uf-5xx")
    assert (running["status"], running["pages"]) == ("running", 3)
    assert "startIndex=50" in running["cursor_url"]
    assert (await connection(pool, "uf-5xx"))["status"] == "pending"
    assert await run_connect(services, job, job_try=JOB_MAX_TRIES) == {"status": "error"}
    reason = f"gave up after {JOB_MAX_TRIES} tries: BB2 answered 504"
    found = await connection(pool, "uf-5xx")
    assert found["status"] == "error"
    assert reason in found["last_error"]
    [failed] = await runs(pool, "uf-5xx")
    assert failed["status"] == "failed"
    assert failed["error"] == found["last_error"]
    assert await stored_resources(pool, "uf-5xx") == first_pages(1)
    assert emulator.state.pending_faults() == 0


@pytest.mark.parametrize("kind", sorted(REFUSALS))
async def test_a_wrong_answer_on_the_second_page_ends_in_a_clear_error(
    pool: asyncpg.Pool, redis: Redis, start: Start, kind: str
) -> None:
    connection_id = f"uf-{kind}"
    # The fault lasts: were the page asked for again, it would be wrong again.
    order = {"kind": kind, "count": 5, **SECOND_EOB_PAGE}
    emulator, job, services = await setup(start, connection_id, order)
    sent = Sent(await http_of(services))
    assert await run_connect(services, job) == {"status": "error"}
    reason, pages_kept = REFUSALS[kind]
    found = await connection(pool, connection_id)
    assert found["status"] == "error"
    assert reason in found["last_error"]
    [run] = await runs(pool, connection_id)
    assert run["status"] == "failed"
    assert run["error"] == found["last_error"]
    assert run["pages"] == 2 + pages_kept  # Patient, Coverage, the good EOB pages
    assert await stored_resources(pool, connection_id) == first_pages(pages_kept)
    # A refused answer is not asked for again, and nothing leaves for another host.
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_endpoint"]["eob_search"] == 2
    assert emulator.state.pending_faults() == 4
    assert sent.hosts() == {urlsplit(emulator.base_url).netloc}
    assert not any(OFFSITE_HOST in url for url in sent.urls)


async def test_the_oversized_answer_is_past_the_worker_limit() -> None:
    assert OVERSIZE_BYTES + 1 > MAX_RESPONSE_BYTES


async def test_a_wrong_coverage_answer_ends_in_a_clear_error(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    order = {"kind": "missing_id", "search": "Coverage"}
    _, job, services = await setup(start, "uf-coverage", order)
    assert await run_connect(services, job) == {"status": "error"}
    found = await connection(pool, "uf-coverage")
    assert found["status"] == "error"
    assert "a Coverage has no usable id" in found["last_error"]
    assert await stored_resources(pool, "uf-coverage") == first_pages(0, coverage=False)


@pytest.mark.parametrize(
    ("search", "searches"), [(EOB, {"eob_search": 1}), ("Coverage", {"coverage_search": 1})]
)
async def test_a_first_page_that_links_to_itself_is_refused(
    pool: asyncpg.Pool, redis: Redis, start: Start, search: str, searches: dict[str, int]
) -> None:
    # The first page's URL is the worker's own spelling, not one of BB2's links.
    emulator, job, services = await setup(start, "uf-loop", {"kind": "next_loop", "search": search})
    assert await run_connect(services, job) == {"status": "error"}
    found = await connection(pool, "uf-loop")
    assert f"{search} next link repeats a page" in found["last_error"]
    stats = await emulator_stats(emulator.base_url)
    assert {name: stats["by_endpoint"].get(name) for name in searches} == searches


MIXED_BENEFICIARIES = 12
MIXED_CONFIG = EmulatorConfig(beneficiaries=MIXED_BENEFICIARIES, claims_per_beneficiary=140)


async def test_a_worker_process_survives_a_mix_of_faults(
    pool: asyncpg.Pool, redis: Redis, start: Start, tmp_path: Path
) -> None:
    emulator, settings, _ = await start(MIXED_CONFIG)
    jobs = await authorize_beneficiaries(emulator.base_url, MIXED_BENEFICIARIES, "mix-")
    await enqueue_all(settings.redis_url, jobs)
    # Among the EOB searches of all connections: a good one, then a fault, for each kind,
    # and a burst of two 503s the in-job retries absorb.
    for kind in sorted(REFUSALS):
        await emulator_post(emulator.base_url, "/_emulator/faults", {"kind": kind, "after": 1})
    await emulator_post(
        emulator.base_url, "/_emulator/faults", {"status": 503, "count": 2, **SECOND_EOB_PAGE}
    )
    env = worker_environment(settings, emulator.base_url, WORKER_CONCURRENCY="4")
    [process] = await start_workers(env, 1, tmp_path)
    assert await process.wait() == 0
    assert "Traceback" not in (tmp_path / "worker-1.log").read_text()
    # Each wrong answer cost exactly one connection; the others have everything.
    assert emulator.state.pending_faults() == 0
    errors = []
    for index in range(MIXED_BENEFICIARIES):
        connection_id = f"mix-BBUser{index:05d}"
        found = await connection(pool, connection_id)
        [run] = await runs(pool, connection_id)
        if found["status"] == "active":
            assert run["status"] == "succeeded"
            assert await stored_resources(pool, connection_id) == served_resources(
                MIXED_CONFIG, index
            )
        else:
            assert found["status"] == "error"
            assert run["status"] == "failed"
            assert run["error"] == found["last_error"]
            errors.append(found["last_error"])
    assert len(errors) == len(REFUSALS)
    for reason, _ in REFUSALS.values():
        assert len([error for error in errors if reason in error]) == 1, reason
    assert await pool.fetchval("SELECT count(*) FROM job_failures") == 0
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_status"]["503"] == 2
