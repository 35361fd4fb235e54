"""One connection's sync, shared by connect and resync: pages stream into the store.

Each page is stored in its own transaction together with the cursor of the next one, so
memory does not grow with the number of claims and a re-run resumes where the last one
stopped. The order of work is :data:`~worker.bluebutton.fhir.RESOURCE_QUERIES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from worker import errors
from worker.bluebutton.bundle import Page, parse_last_updated
from worker.bluebutton.fhir import RESOURCE_QUERIES, ResourceQuery, iter_pages
from worker.jobs.services import Services
from worker.jobs.tokens import ConnectionTokens
from worker.store import connections, resources, sync_runs
from worker.store.resources import ResourceRow
from worker.store.sync_runs import Cursor, Kind

log = structlog.get_logger(__name__)

# The cursor of a run whose every resource type is stored.
DONE: Final = "*"


@dataclass(frozen=True)
class Step:
    """A resource type still to fetch, from ``start_url`` (None: its first page)."""

    query: ResourceQuery
    start_url: str | None


def remaining_steps(cursor: Cursor | None, queries: Sequence[ResourceQuery]) -> list[Step]:
    """What is left to fetch after ``cursor`` (None: everything)."""
    if cursor is None:
        return [Step(query, None) for query in queries]
    types = [query.resource_type for query in queries]
    if cursor.resource_type not in types:
        return []
    at = types.index(cursor.resource_type)
    return [Step(queries[at], cursor.url)] + [Step(query, None) for query in queries[at + 1 :]]


def cursor_after(
    query: ResourceQuery, next_url: str | None, queries: Sequence[ResourceQuery]
) -> Cursor:
    """The cursor once a page of ``query`` with link ``next_url`` is stored."""
    if next_url is not None:
        return Cursor(query.resource_type, next_url)
    types = [q.resource_type for q in queries]
    following = types.index(query.resource_type) + 1
    return Cursor(types[following] if following < len(types) else DONE, None)


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
    pages: int
    resources: int
    skipped_types: tuple[str, ...]
    refreshes: int


async def _store_page(
    services: Services, connection_id: str, run_id: int, query: ResourceQuery, page: Page
) -> None:
    cursor = cursor_after(query, page.next_url, RESOURCE_QUERIES)
    async with services.pool.acquire() as conn, conn.transaction():
        await connections.lock_live(conn, connection_id)
        counts = await resources.upsert(conn, connection_id, query.resource_type, rows_of(page))
        await sync_runs.record_page(conn, run_id, counts, cursor)


async def _skip(services: Services, run_id: int, query: ResourceQuery, why: str) -> None:
    log.info("resource_type_skipped", resource_type=query.resource_type, reason=why)
    async with services.pool.acquire() as conn:
        await sync_runs.skip_type(
            conn, run_id, query.resource_type, cursor_after(query, None, RESOURCE_QUERIES)
        )


async def sync_connection(
    services: Services, connection: connections.Connection, kind: Kind
) -> SyncResult:
    """Fetch every granted resource type of ``connection`` into the store.

    Raises what the fetch raises; the run stays ``running`` with its cursor so that a
    retry resumes it, and the caller decides whether to retry or close it as failed.
    """
    assert connection.patient_id is not None
    async with services.pool.acquire() as conn:
        run = await sync_runs.start_or_resume(conn, connection.connection_id, kind)
    tokens = ConnectionTokens(services, connection.connection_id)
    pages = stored = 0
    skipped: list[str] = []
    for step in remaining_steps(run.cursor, RESOURCE_QUERIES):
        query = step.query
        if query.scope not in connection.scopes:
            skipped.append(query.resource_type)
            await _skip(services, run.run_id, query, "scope not granted")
            continue
        first = step.start_url is None
        try:
            async for page in iter_pages(
                services.bluebutton, query, connection.patient_id, tokens, start_url=step.start_url
            ):
                await _store_page(services, connection.connection_id, run.run_id, query, page)
                pages, stored, first = pages + 1, stored + len(page.resources), False
        except errors.Forbidden:
            # BB2 answers 403 for data the beneficiary withheld (personal information,
            # SAMHSA); on a type's first page that is an answer, not a failure.
            if not first:
                raise
            skipped.append(query.resource_type)
            await _skip(services, run.run_id, query, "403 from BB2")
    return SyncResult(run.run_id, pages, stored, tuple(skipped), tokens.refreshes)
