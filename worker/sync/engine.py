"""One connection's sync, shared by connect and resync: pages stream into the store.

Each page is stored in its own transaction together with the cursor of the next one, so
memory does not grow with the number of claims and a re-run resumes where the last one
stopped. A full pass also notes every id it sees, and at its end deletes what BB2 no
longer serves; an incremental pass asks only for what changed. A large beneficiary's EOBs
are read by the narrower searches :mod:`worker.sync.ranges` plans from the first page, kept
in the cursor so that a resumed run goes on with the same searches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from worker import errors, metrics
from worker.apps import App
from worker.bluebutton.bundle import Page, parse_last_updated
from worker.bluebutton.client import BlueButtonClient
from worker.bluebutton.fhir import RESOURCE_QUERIES, ResourceQuery, iter_pages
from worker.constants import EOB_PAGE_SIZE
from worker.runtime.services import Services
from worker.store import connections, resources, sync_runs
from worker.store.resources import ResourceRow
from worker.sync.model import Cursor, Plan, Run, RunKind, Split
from worker.sync.plan import Step, cursor_after, queries_for, remaining_steps
from worker.sync.ranges import plan_split, search_url
from worker.sync.tokens import ConnectionTokens

log = structlog.get_logger(__name__)


def rows_of(page: Page) -> list[ResourceRow]:
    """The page's resources as store rows (already validated by the bundle parser)."""
    return [
        ResourceRow(resource["id"], resource, parse_last_updated(resource))
        for resource in page.resources
    ]


@dataclass(frozen=True)
class SyncResult:
    """What a completed sync did."""

    run_id: int
    plan: Plan
    pages: int
    resources: int
    skipped_types: tuple[str, ...]
    refreshes: int


class _Sync:
    """The state of one sync while it runs; one instance per job."""

    def __init__(
        self,
        services: Services,
        connection: connections.Connection,
        run: Run,
        app: App,
        bluebutton: BlueButtonClient,
    ) -> None:
        assert connection.patient_id is not None
        self.services = services
        self.bluebutton = bluebutton
        self.connection_id = connection.connection_id
        self.patient_id = connection.patient_id
        self.scopes = connection.scopes
        self.run = run
        self.queries: Sequence[ResourceQuery] = queries_for(run.plan, RESOURCE_QUERIES)
        self.tokens = ConnectionTokens(services, connection.connection_id, app, bluebutton)
        self.pages = self.stored = 0
        self.skipped: list[str] = []

    async def store(self, query: ResourceQuery, page: Page, split: Split | None) -> None:
        cursor = cursor_after(query, page.next_url, self.queries, split)
        rows = await asyncio.to_thread(rows_of, page)
        run_id, connection_id = self.run.run_id, self.connection_id
        async with self.services.pool.acquire() as conn, conn.transaction():
            await connections.lock_live(conn, connection_id)
            counts = await resources.upsert(conn, connection_id, query.resource_type, rows)
            if self.run.plan.mode == "full":
                ids = [row.resource_id for row in rows]
                await sync_runs.remember_seen(conn, connection_id, run_id, query.resource_type, ids)
            await sync_runs.record_page(conn, connection_id, run_id, counts, cursor)
        for result, count in (
            ("inserted", counts.inserted),
            ("updated", counts.updated),
            ("unchanged", counts.unchanged),
        ):
            metrics.RESOURCES.labels(query.resource_type, result).inc(count)
        self.pages, self.stored = self.pages + 1, self.stored + len(rows)

    async def skip(self, query: ResourceQuery, why: str) -> None:
        log.info("resource_type_skipped", resource_type=query.resource_type, reason=why)
        self.skipped.append(query.resource_type)
        cursor = cursor_after(query, None, self.queries)
        async with self.services.pool.acquire() as conn:
            await sync_runs.skip_type(
                conn, self.connection_id, self.run.run_id, query.resource_type, cursor
            )

    async def begin_split(self, query: ResourceQuery, split: Split) -> None:
        """Note the planned split in the cursor before its first search is read."""
        log.info("search_split", resource_type=query.resource_type, searches=len(split.searches))
        cursor = Cursor(query.resource_type, None, split)
        async with self.services.pool.acquire() as conn:
            await sync_runs.move_cursor(conn, self.connection_id, self.run.run_id, cursor)

    async def fetch(self, step: Step) -> None:
        """Read a type: by its one search, or by the narrower searches of its split (the
        cursor's, or one the search's first page plans)."""
        split, start_url = step.split, step.start_url
        if split is None:
            split, start_url = await self._resumable(step.query, start_url, None), None
        if split is None:
            return
        for at in range(split.at, len(split.searches)):
            await self._resumable(step.query, start_url, replace(split, at=at))
            start_url = None

    async def _resumable(
        self, query: ResourceQuery, start_url: str | None, split: Split | None
    ) -> Split | None:
        try:
            return await self._read(query, start_url, split)
        except errors.CursorPastEnd:
            # A saved startIndex now past the end (claims were removed: FACTS.md, Errors):
            # read the type (or the split's search) again from its first page, once.
            if start_url is None:
                raise
            log.info("cursor_past_end_restarted", resource_type=query.resource_type)
            return await self._read(query, None, split)

    def _first_url(self, query: ResourceQuery, split: Split | None) -> str | None:
        if split is None:
            return None
        since = self.run.plan.since
        first = query.first_url(self.bluebutton.base_url, self.patient_id, since)
        return search_url(first, split.searches[split.at])

    async def _read(
        self, query: ResourceQuery, start_url: str | None, split: Split | None
    ) -> Split | None:
        """Read one search from ``start_url`` (None: its first page); returns the split
        its first page planned instead (only for an unsplit search of a splittable type)."""
        first = start_url is None and split is None
        try:
            async for page in iter_pages(
                self.bluebutton,
                query,
                self.patient_id,
                self.tokens,
                start_url=start_url or self._first_url(query, split),
                since=self.run.plan.since,
            ):
                planned = plan_split(page.total, page.resources, EOB_PAGE_SIZE)
                if first and query.splittable and planned is not None:
                    # The split's searches read this page's claims again: not stored.
                    await self.begin_split(query, Split(planned))
                    return Split(planned)
                await self.store(query, page, split)
                first = False
        except errors.Forbidden as exc:
            # BB2's JSON 403 on a type the beneficiary can withhold (personal information,
            # SAMHSA), on its first page, is an answer: skip the type. Any other 403 (on
            # Coverage, or mid-way) says nothing about consent: a deleted grant shows as
            # 401 and then a refresh 403 invalid_grant (FACTS.md, Authorization, Errors).
            if not (query.withholdable and first):
                raise errors.EdgeRefused(
                    f"BB2 refused {query.resource_type} (403) where nothing is withheld",
                    status=403,
                ) from exc
            await self.skip(query, "403 from BB2")
        return None

    async def run_steps(self) -> SyncResult:
        for step in remaining_steps(self.run.cursor, self.queries):
            if step.query.scope not in self.scopes:
                await self.skip(step.query, "scope not granted")
            else:
                await self.fetch(step)
        return SyncResult(
            self.run.run_id,
            self.run.plan,
            self.pages,
            self.stored,
            tuple(self.skipped),
            self.tokens.refreshes,
        )


async def sync_connection(
    services: Services, connection: connections.Connection, app: App, kind: RunKind, plan: Plan
) -> SyncResult:
    """Fetch what ``plan`` asks of ``connection`` into the store through ``app`` (a resumed
    run keeps its own plan).

    Raises what the fetch raises; the run stays ``running`` with its cursor so that a
    retry resumes it, and the caller decides whether to retry or close it as failed.
    """
    bluebutton = await services.bluebutton(app)
    async with services.pool.acquire() as conn:
        run = await sync_runs.start_or_resume(conn, connection.connection_id, kind, plan)
    return await _Sync(services, connection, run, app, bluebutton).run_steps()
