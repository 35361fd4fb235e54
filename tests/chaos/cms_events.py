"""CMS-side events at scale: the second table of ``make chaos``.

Each scenario connects every beneficiary, makes CMS do one thing (FACTS.md: an app made
inactive, an edge's HTML 403s, a refresh that rotates then fails, a cursor past the end, a
re-consent mid-sync, a lost revoke answer, one of two connections of a person unlinked,
claims removed),
runs the jobs it touches to the end (a job's arq ``Retry`` runs it again with the next try;
a minute of an app's pause is simulated by clearing its probe key) and counts:

- **lost**: served resources missing at the end from a connection that should hold them,
  and any row stored before the event and gone after it that no deletion in the audit log
  accounts for (of a connection nobody unlinked);
- **wrongly deleted**: deletions the audit log records beyond what CMS stopped serving (a
  full pass deleting what CMS still serves, even if a later pass stored it again); a
  resource deleted because CMS no longer returns it is legitimate;
- **wrongly ended**: connections in ``needs_reauth`` or ``error`` without the beneficiary's
  doing (those CMS truly cost their consent are counted apart, as ``re-consent``);
- **leaked**: for an unlinked connection, a grant or live token CMS still holds for it, or a
  revocation still owed.

Jobs run in this process (the jobs' own functions, real Postgres, Redis and emulator): the
events are about what CMS answers, not about processes dying, which the first table covers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
from arq import Retry

from tests.chaos.measure import markdown_table
from tests.chaos.run import Size, Target, target_settings
from tests.integration.support import (
    authorized_job,
    emulator_post,
    patient_id,
    reset_stores,
    served_resources,
)
from worker.bluebutton.endpoints import REVOKE_GRANT_PATH
from worker.constants import APP_PROBE_KEY, JOB_MAX_TRIES
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import RunningEmulator, running_emulator
from worker.jobs.connect import connect
from worker.jobs.resync import resync
from worker.jobs.unlink import unlink
from worker.local import CLIENT_ID, authorize_beneficiaries
from worker.runtime.services import Services, close_services, open_services

PREFIX = "cms-"
Key = tuple[str, str]
Job = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class EventFigures:
    """One row of the CMS-events table."""

    scenario: str
    connections: int
    lost: int
    wrongly_deleted: int
    wrongly_ended: int
    leaked: int
    reconsent: int  # connections CMS truly cost their consent (refresh then 502)
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """Nothing lost, deleted, ended or leaked that should not be, and nothing else."""
        return not (self.lost or self.wrongly_deleted or self.wrongly_ended or self.leaked) and (
            not self.problems
        )


@dataclass
class World:
    """A scenario's emulator, services and connections (id -> beneficiary index)."""

    emulator: RunningEmulator
    services: Services
    config: EmulatorConfig
    connections: dict[str, int]
    before: dict[str, set[Key]] = dataclasses.field(default_factory=dict)
    removed: dict[str, set[Key]] = dataclasses.field(default_factory=dict)  # by CMS
    audit_mark: int = 0  # the last audit row before the event
    unlinked: set[str] = dataclasses.field(default_factory=set)
    expected_reauth: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


async def stored_keys(world: World, connection_id: str) -> set[Key]:
    rows = await world.services.pool.fetch(
        "SELECT resource_type, resource_id FROM fhir_resources WHERE connection_id = $1",
        connection_id,
    )
    return {(row["resource_type"], row["resource_id"]) for row in rows}


async def run_to_end(world: World, job: Job, connection_id: str) -> dict[str, Any]:
    """Run ``job`` as arq would: a Retry runs it again with the next try (a paused app's
    minute passes at once: its probe key is cleared)."""
    for job_try in range(1, JOB_MAX_TRIES + 1):
        try:
            return await job({"services": world.services, "job_try": job_try}, connection_id)
        except Retry:
            await world.services.redis.delete(APP_PROBE_KEY.format(app="default"))
            await asyncio.sleep(0.05)
    world.problems.append(f"{connection_id}: still retrying after {JOB_MAX_TRIES} tries")
    return {"status": "retrying"}


async def each(world: World, job: Job, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``job`` for every connection (or ``ids``), four at a time, each run to its end."""
    gate = asyncio.Semaphore(4)

    async def one(connection_id: str) -> dict[str, Any]:
        async with gate:
            return await run_to_end(world, job, connection_id)

    return await asyncio.gather(*(one(cid) for cid in (ids or list(world.connections))))


async def age_runs(world: World) -> None:
    """Make the next resync a full pass (the last full one is 60 days old)."""
    await world.services.pool.execute(
        "UPDATE sync_runs SET started_at = started_at - interval '60 days'"
    )


async def _connect_job(world: World, index: int, connection_id: str) -> None:
    job = await authorized_job(world.emulator.base_url, index, connection_id=connection_id)
    result = await connect({"services": world.services, "job_try": 1}, **job.model_dump())
    if result["status"] != "active":
        world.problems.append(f"{connection_id}: connect ended {result['status']}")


# --- the events ------------------------------------------------------------------------


async def app_inactive(world: World) -> None:
    await age_runs(world)
    switch = {"client_id": CLIENT_ID, "inactive": True}
    await emulator_post(world.emulator.base_url, "/_emulator/apps/inactive", switch)
    ctx = {"services": world.services}
    for cid in world.connections:  # two minutes of refusals: every job waits, twice
        for job_try in (1, 2):
            try:
                await resync({**ctx, "job_try": job_try}, cid)
                world.problems.append(f"{cid}: synced while the app was inactive")
            except Retry:
                await world.services.redis.delete(APP_PROBE_KEY.format(app="default"))
    await emulator_post(
        world.emulator.base_url, "/_emulator/apps/inactive", {**switch, "inactive": False}
    )
    # One probe period after CMS reactivated the app, every job goes through.
    for cid in world.connections:
        result = await resync({**ctx, "job_try": 3}, cid)
        if result["status"] != "active":
            world.problems.append(f"{cid}: {result['status']} a minute after reactivation")


async def edge_forbids(world: World) -> None:
    await age_runs(world)
    for index in list(world.connections.values())[::2]:
        forbid = {"patient_id": patient_id(index), "count": 2}
        await emulator_post(world.emulator.base_url, "/_emulator/edge/forbid", forbid)
    await each(world, resync)


async def refresh_then_502(world: World) -> None:
    failing = max(1, len(world.connections) // 5)
    world.expected_reauth = failing
    order = {"status": 502, "count": failing}
    await emulator_post(world.emulator.base_url, "/_emulator/faults/refresh", order)
    await world.services.pool.execute(
        "UPDATE connections SET access_expires_at = now() - interval '1 hour'"
    )
    await each(world, resync)


async def cursor_past_end(world: World) -> None:
    for cid, index in world.connections.items():
        await world.services.pool.execute(
            """INSERT INTO sync_runs (connection_id, kind, mode, since, cursor_type, cursor_url)
               VALUES ($1, 'resync', 'incremental', now() - interval '1 day',
                       'ExplanationOfBenefit', $2)""",
            cid,
            f"{world.emulator.base_url}/v2/fhir/ExplanationOfBenefit/?patient="
            f"{patient_id(index)}&_count=10&startIndex=5000",
        )
    await each(world, resync)


async def reconsent_mid_sync(world: World) -> None:
    await age_runs(world)
    syncs = asyncio.create_task(each(world, resync))
    await asyncio.sleep(0.2)  # the resyncs are under way with the old tokens
    again = list(world.connections.items())[::2]
    await asyncio.gather(*(_connect_job(world, index, cid) for cid, index in again))
    await syncs
    await age_runs(world)
    await each(world, resync)  # and every connection works afterwards


async def unlink_answer_lost(world: World) -> None:
    lost: set[str] = set()

    async def lose_first_answer(response: httpx.Response) -> None:
        token = response.request.content.decode()
        if response.request.url.path == REVOKE_GRANT_PATH and token not in lost:
            lost.add(token)
            raise httpx.ReadError("answer lost on the way back")

    app = await world.services.app("default")
    http = (await world.services.bluebutton(app)).http
    http.event_hooks["response"].append(lose_first_answer)
    try:
        await each(world, unlink)
    finally:
        http.event_hooks["response"].remove(lose_first_answer)
    world.unlinked |= set(world.connections)
    if len(lost) != len(world.connections):
        world.problems.append(f"{len(lost)} revoke answers lost, not one per connection")


async def unlink_one_of_two(world: World) -> None:
    seconds = {f"{cid}-b": index for cid, index in world.connections.items()}
    await asyncio.gather(*(_connect_job(world, index, cid) for cid, index in seconds.items()))
    firsts = list(world.connections)
    world.connections.update(seconds)
    world.before.update({cid: await stored_keys(world, cid) for cid in seconds})
    await each(world, unlink, firsts)
    world.unlinked |= set(firsts)
    await age_runs(world)
    await each(world, resync, list(seconds))


async def claims_removed(world: World) -> None:
    for cid, index in world.connections.items():
        eobs = sorted(rid for kind, rid in world.before[cid] if kind == "ExplanationOfBenefit")
        for eob_id in eobs[:2]:
            remove = {"patient_id": patient_id(index), "eob_id": eob_id}
            await emulator_post(world.emulator.base_url, "/_emulator/claims/remove", remove)
        world.removed[cid] = {("ExplanationOfBenefit", eob_id) for eob_id in eobs[:2]}
    await age_runs(world)
    await each(world, resync)  # full passes: each deletes its two claims, audited


@dataclass(frozen=True)
class EventScenario:
    """A row: its name and the event it plays."""

    name: str
    play: Callable[[World], Awaitable[None]]


EVENT_SCENARIOS: tuple[EventScenario, ...] = (
    EventScenario("app inactive for a while", app_inactive),
    EventScenario("edge 403 during a full pass", edge_forbids),
    EventScenario("refresh then 502", refresh_then_502),
    EventScenario("cursor past the end", cursor_past_end),
    EventScenario("re-consent mid-sync", reconsent_mid_sync),
    EventScenario("unlink, first revoke answer lost", unlink_answer_lost),
    EventScenario("unlink one of two connections of a person", unlink_one_of_two),
    EventScenario("claims removed at CMS", claims_removed),
)


# --- judging -----------------------------------------------------------------------------


async def _leaked(world: World) -> int:
    owed = await world.services.pool.fetchval("SELECT count(*) FROM pending_revocations")
    leaked = int(owed)
    kept = {index for cid, index in world.connections.items() if cid not in world.unlinked}
    for index in {world.connections[cid] for cid in world.unlinked}:
        async with httpx.AsyncClient(base_url=world.emulator.base_url) as http:
            answer = await http.get("/_emulator/grants", params={"patient_id": patient_id(index)})
        grants = answer.json()["grants"]
        if index in kept:  # the person's other connection keeps the grant and its tokens
            leaked += sum(max(0, g["live_refresh_tokens"] - 1) for g in grants)
        else:
            leaked += len(grants) + sum(g["live_refresh_tokens"] for g in grants)
    return leaked


@dataclass(frozen=True)
class Held:
    """One connection's rows before the event and at the end, what CMS serves it at the
    end, and how many rows the audit log says passes deleted since the event."""

    before: set[Key]
    stored: set[Key]
    served: set[Key]
    audited_deletions: int


def lost_and_wrongly_deleted(held: Held, *, healthy: bool) -> tuple[int, int]:
    """Lost: served but missing (from a ``healthy`` connection, one that should hold
    everything), plus disappearances beyond the deletions audited. Wrongly deleted:
    audited deletions beyond what CMS stopped serving."""
    missing = held.served - held.stored if healthy else set()
    gone = held.before - held.stored - missing
    unaudited = max(0, len(gone) - held.audited_deletions)
    wrong = max(0, held.audited_deletions - len(held.before - held.served))
    return len(missing) + unaudited, wrong


async def _held(world: World, connection_id: str, index: int) -> Held:
    deleted = await world.services.pool.fetchval(
        """SELECT coalesce(sum((detail->>'deleted')::int), 0) FROM audit_log
           WHERE connection_id = $1 AND event = 'synced' AND audit_id > $2""",
        connection_id,
        world.audit_mark,
    )
    served = set(served_resources(world.config, index)) - world.removed.get(connection_id, set())
    before = world.before.get(connection_id, set())
    return Held(before, await stored_keys(world, connection_id), served, int(deleted))


async def judge(world: World, name: str) -> EventFigures:
    lost = deleted = ended = reconsent = 0
    for cid, index in world.connections.items():
        if cid in world.unlinked:
            continue
        status = await world.services.pool.fetchval(
            "SELECT status FROM connections WHERE connection_id = $1", cid
        )
        healthy = status not in ("needs_reauth", "error")
        reconsent += not healthy
        missing, wrong = lost_and_wrongly_deleted(await _held(world, cid, index), healthy=healthy)
        lost, deleted = lost + missing, deleted + wrong
    ended = max(0, reconsent - world.expected_reauth)
    return EventFigures(
        name,
        len(world.connections),
        lost,
        deleted,
        ended,
        await _leaked(world),
        min(reconsent, world.expected_reauth),
        tuple(world.problems),
    )


async def run_event(scenario: EventScenario, target: Target, size: Size) -> EventFigures:
    """Connect ``size.beneficiaries`` people, play the event, judge the outcome."""
    await reset_stores(target.database_url, target.redis_url)
    config = EmulatorConfig(beneficiaries=size.beneficiaries, claims_per_beneficiary=size.claims)
    async with AsyncExitStack() as stack:
        emulator = await stack.enter_async_context(running_emulator(config))
        settings = target_settings(emulator, target, size)
        services = await open_services(settings, concurrency=size.concurrency)
        stack.push_async_callback(close_services, services)
        jobs = await authorize_beneficiaries(emulator.base_url, size.beneficiaries, PREFIX)
        world = World(
            emulator, services, config, {job.connection_id: i for i, job in enumerate(jobs)}
        )
        ctx = {"services": services, "job_try": 1}
        await asyncio.gather(*(connect(ctx, **job.model_dump()) for job in jobs))
        world.before = {cid: await stored_keys(world, cid) for cid in world.connections}
        world.audit_mark = await services.pool.fetchval(
            "SELECT coalesce(max(audit_id), 0) FROM audit_log"
        )
        await scenario.play(world)
        return await judge(world, scenario.name)


def event_table(results: Sequence[EventFigures]) -> str:
    """The CMS-events table in Markdown."""
    header = (
        "CMS event", "connections", "lost", "wrongly deleted", "wrongly ended", "leaked",
        "re-consent (CMS's doing)", "passed",
    )  # fmt: skip
    rows = [
        (
            r.scenario,
            r.connections,
            r.lost,
            r.wrongly_deleted,
            r.wrongly_ended,
            r.leaked,
            r.reconsent,
            "yes" if r.passed else "NO",
        )
        for r in results
    ]
    return markdown_table(header, rows, passed=True)
