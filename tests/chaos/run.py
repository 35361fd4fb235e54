"""Running one chaos scenario end to end: beneficiaries authorize at the emulator, their
connect jobs are queued, worker replicas run as processes, the disruption strikes mid-run,
and the outcome is gathered for :mod:`tests.chaos.measure`.

Shared by ``make chaos`` (50 beneficiaries) and the reduced forms in ``make test``.
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg

from tests.chaos.leaks import RecordingState, Secrets, read_logs, run_secrets, scan_logs
from tests.chaos.measure import Connection, Figures, Key, Run, figures, pages_of_one_pass
from tests.chaos.scenarios import Scenario
from tests.integration.conftest import settings_for
from tests.integration.private_services import private_postgres, private_redis
from tests.integration.support import (
    emulator_post,
    patient_id,
    reset_stores,
    served_resources,
)
from worker.crypto import generate_key
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import RunningEmulator, running_emulator
from worker.jobs.exchange_rules import LOST_IN_FLIGHT
from worker.jobs.payloads import ConnectJob, ExchangeJob
from worker.local import (
    authorize_beneficiaries,
    enqueue_all,
    start_workers,
    stop_workers,
    wait_for_replicas,
    worker_environment,
)
from worker.settings import Settings
from worker.store.db import connection

Served = dict[str, dict[Key, Any]]  # connection id -> what the emulator serves it

PREFIX = "chaos-"
REPLICAS = 2
# Short leases: a job whose replica died (or whose outcome Redis missed) runs again soon.
LEASE_SECONDS = "2"
# The disruption strikes once this share of all pages is stored.
STRIKE_AT = 0.3
# How long a server stays away when restarted.
OUTAGE_SECONDS = 2.0


@dataclass(frozen=True)
class Target:
    """The Postgres and Redis a scenario runs on (private ones replace them for restarts)."""

    database_url: str
    redis_url: str


@dataclass(frozen=True)
class Size:
    """How much work a scenario gives the workers, and how fast they may ask for it."""

    beneficiaries: int = 50
    claims: int = 120
    rate_limit: int = 60
    concurrency: int = 4  # jobs a lane; 2 makes each replica hold some of a small run's jobs


@dataclass(frozen=True)
class Report:
    """A scenario's figures, the secrets its logs were searched for, and where they are."""

    figures: Figures
    secrets: Secrets
    logs: Path


@dataclass
class Live:
    """A scenario while it runs."""

    scenario: Scenario
    target: Target
    emulator: RunningEmulator
    workdir: Path
    env: dict[str, str]
    processes: list[asyncio.subprocess.Process]
    restart: Any = None  # the private server the disruption restarts
    beneficiaries: int = 0
    burst: bool = True  # the workers exit once the queues are empty


async def run_scenario(scenario: Scenario, target: Target, workdir: Path, size: Size) -> Report:
    """Run ``scenario`` on ``target`` and judge its outcome."""
    async with AsyncExitStack() as stack:
        target, server = await _infrastructure(stack, scenario, target, workdir)
        await reset_stores(target.database_url, target.redis_url)
        state = RecordingState()
        config = EmulatorConfig(
            beneficiaries=size.beneficiaries,
            claims_per_beneficiary=size.claims,
            fault_seed=1,  # draws a drop and a slow answer among the first 16 requests
            **scenario.emulator,
        )
        served = {
            f"{PREFIX}BBUser{i:05d}": served_resources(config, i) for i in range(size.beneficiaries)
        }
        emulator = await stack.enter_async_context(running_emulator(config, state=state))
        jobs, queued = await _prepare(scenario, emulator, target, size)
        live = await _start(scenario, target, emulator, workdir, size)
        stack.push_async_callback(_stop_all, live)  # whatever happens, no worker outlives it
        live.restart = server
        live.beneficiaries = size.beneficiaries
        if not live.burst:
            # As events reach a running service: every replica polls before the codes come.
            await wait_for_replicas(target.redis_url, REPLICAS)
            await enqueue_all(target.redis_url, queued)
        problems = await _disrupt(live, sum(map(pages_of_one_pass, served.values())))
        problems += await _wait(live)
        return await _judge(live, state, jobs, served, problems)


async def _infrastructure(
    stack: AsyncExitStack, scenario: Scenario, target: Target, workdir: Path
) -> tuple[Target, Any]:
    """The target, with the server the scenario restarts swapped for a private one."""
    if scenario.disruption == "redis":
        (workdir / "redis").mkdir(parents=True, exist_ok=True)
        redis = await stack.enter_async_context(private_redis(workdir / "redis"))
        return replace(target, redis_url=redis.url), redis
    if scenario.disruption == "postgres":
        postgres = await stack.enter_async_context(private_postgres())
        return replace(target, database_url=postgres.url), postgres
    return target, None


async def _prepare(
    scenario: Scenario, emulator: RunningEmulator, target: Target, size: Size
) -> tuple[list[ConnectJob], list[ConnectJob]]:
    """Authorize every beneficiary, order the scenario's faults, queue the jobs (for burst
    workers); the connect jobs, and the jobs to queue."""
    jobs = await authorize_beneficiaries(emulator.base_url, size.beneficiaries, PREFIX)
    for order in scenario.faults:
        await emulator_post(emulator.base_url, "/_emulator/faults", order)
    if scenario.expire_tokens:
        for index in range(size.beneficiaries):
            expiry = {"patient_id": patient_id(index), "after_requests": 2}
            await emulator_post(emulator.base_url, "/_emulator/tokens/expire", expiry)
    queued = [ExchangeJob(**job.model_dump()) for job in jobs] if scenario.via_exchange else jobs
    if _burst(scenario):
        await enqueue_all(target.redis_url, queued)
    return jobs, queued


def _burst(scenario: Scenario) -> bool:
    """Burst workers drain jobs queued before they start; the mid-exchange kill needs
    running replicas that each hold an exchange when it strikes."""
    return scenario.disruption != "sigkill-exchanges"


def target_settings(emulator: RunningEmulator, target: Target, size: Size) -> Settings:
    """Worker settings for a chaos run: the emulator, the target's stores, a new key."""
    return settings_for(
        emulator.base_url,
        generate_key(),
        DATABASE_URL=target.database_url,
        REDIS_URL=target.redis_url,
        BB_RATE_LIMIT=str(size.rate_limit),
    )


async def _start(
    scenario: Scenario, target: Target, emulator: RunningEmulator, workdir: Path, size: Size
) -> Live:
    settings = target_settings(emulator, target, size)
    env = worker_environment(
        settings,
        emulator.base_url,
        JOB_LEASE_SECONDS=LEASE_SECONDS,
        WORKER_CONCURRENCY=str(size.concurrency),
        LOG_LEVEL="debug",  # every line the code can write is searched for secrets
        **scenario.worker_env,
    )
    burst = _burst(scenario)
    processes = await start_workers(env, REPLICAS, workdir / "logs", burst=burst)
    return Live(scenario, target, emulator, workdir, env, processes, burst=burst)


async def _disrupt(live: Live, pages: int) -> list[str]:
    """Strike once STRIKE_AT of the pages are stored (or, mid-exchange, while every replica
    holds an exchange); what went wrong on the way."""
    disruption = live.scenario.disruption
    if disruption == "none":
        return []
    if disruption == "sigkill-exchanges":
        reached = await _reached(live, _EXCHANGING, REPLICAS)
    else:
        reached = await _reached(live, _STORED, max(3, round(pages * STRIKE_AT)))
    if not reached:
        return ["the run ended before the disruption"]
    if disruption in ("sigkill", "sigkill-exchanges"):
        doomed = live.processes.pop(0)
        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()
        if live.burst:  # running replicas carry on without a rescuer
            rescuer = await start_workers(live.env, 1, live.workdir / "logs" / "rescuer")
            live.processes += rescuer
    else:
        await live.restart.restart(OUTAGE_SECONDS)
    return []


_STORED = "SELECT coalesce(sum(pages), 0) FROM sync_runs"
_SETTLED = "SELECT count(*) FROM connections WHERE status IN ('active', 'error')"
# The mid-exchange kill strikes while every replica holds an exchange (one at a time each).
_EXCHANGING = "SELECT count(*) FROM code_exchanges WHERE started_at IS NOT NULL AND outcome IS NULL"


async def _reached(live: Live, query: str, target: int) -> bool:
    """Wait until ``query`` counts ``target``; False if the run ended first (every worker
    exited, or every connection settled)."""
    conn = await asyncpg.connect(live.target.database_url)
    try:
        while await conn.fetchval(query) < target:
            if all(process.returncode is not None for process in live.processes):
                return False
            if query != _SETTLED and await conn.fetchval(_SETTLED) >= live.beneficiaries:
                return False
            await asyncio.sleep(0.01)
        return True
    finally:
        await conn.close()


async def _stop_all(live: Live) -> None:
    await stop_workers(live.processes)


async def _wait(live: Live) -> list[str]:
    """Wait for the burst workers to drain the queue (running ones: until every connection
    settled, then stop them); a worker that fails is a problem."""
    if not live.burst:
        async with asyncio.timeout(300):
            await _reached(live, _SETTLED, live.beneficiaries)
        await _stop_all(live)
    codes = [await process.wait() for process in live.processes]
    return [f"a worker exited with {code}" for code in codes if code != 0]


async def _judge(
    live: Live, state: RecordingState, jobs: list[ConnectJob], served: Served, problems: list[str]
) -> Report:
    connections = await _connections(live.target.database_url, served)
    patients = [
        resource
        for resources in served.values()
        for (kind, _), resource in resources.items()
        if kind == "Patient"
    ]
    secrets = run_secrets(state, jobs, patients)
    logs = read_logs(live.workdir / "logs")
    leaks = scan_logs(logs, secrets)
    lines = [line for each in logs.values() for line in each]
    evidence = live.scenario.evidence
    if evidence and not any(evidence in line for line in lines):
        problems.append(f"no {evidence} in the logs: the scenario missed its aim")
    if "Traceback" in "".join(lines):
        problems.append("a traceback in the logs")
    lost = [c for c in connections if c.recorded_error and c.last_error == LOST_IN_FLIGHT]
    if len(lost) > live.scenario.lost_in_flight_allowed:
        problems.append(f"{len(lost)} exchanges lost in flight, at most one replica's expected")
    reasons = sorted(str(c.last_error) for c in connections if c.recorded_error and c not in lost)
    if len(reasons) != live.scenario.expected_errors:
        problems.append(
            f"{len(reasons)} recorded errors, {live.scenario.expected_errors} expected:"
            f" {'; '.join(reasons) or '-'}"
        )
    result = figures(live.scenario.name, connections, lines, len(leaks), problems)
    return Report(result, secrets, live.workdir / "logs")


async def _connections(database_url: str, served: Served) -> list[Connection]:
    async with connection(database_url) as conn:
        rows = await conn.fetch("SELECT connection_id, status, last_error FROM connections")
        found = {row["connection_id"]: row for row in rows}
        return [
            Connection(
                connection_id=connection_id,
                status=found[connection_id]["status"] if connection_id in found else "missing",
                last_error=found[connection_id]["last_error"] if connection_id in found else None,
                runs=await _runs(conn, connection_id),
                rows=await _rows(conn, connection_id),
                served=resources,
            )
            for connection_id, resources in served.items()
        ]


async def _runs(conn: asyncpg.Connection, connection_id: str) -> list[Run]:
    rows = await conn.fetch(
        "SELECT status, pages, error FROM sync_runs WHERE connection_id = $1 ORDER BY run_id",
        connection_id,
    )
    return [Run(row["status"], row["pages"], row["error"]) for row in rows]


async def _rows(conn: asyncpg.Connection, connection_id: str) -> list[tuple[str, str, Any]]:
    rows = await conn.fetch(
        "SELECT resource_type, resource_id, resource FROM fhir_resources WHERE connection_id = $1",
        connection_id,
    )
    return [(row["resource_type"], row["resource_id"], row["resource"]) for row in rows]
