"""Paged FHIR reads for one beneficiary, as an async iterator of validated pages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from worker import errors
from worker.bluebutton import endpoints
from worker.bluebutton.answer_errors import fhir_error
from worker.bluebutton.bundle import Page, check_content_type, parse_read, parse_search_page
from worker.bluebutton.client import BlueButtonClient
from worker.constants import EOB_PAGE_SIZE, MAX_PAGES_PER_QUERY


@dataclass(frozen=True)
class ResourceQuery:
    """How to fetch one resource type; adding a type is adding one of these.

    ``search`` types answer Bundles and accept ``_lastUpdated``, so an incremental pass
    asks them only for what changed; a read (Patient) is fetched on full passes only.
    ``withholdable`` types are refused (403) for data the beneficiary withheld; a 403 on any
    other type means the grant itself is gone. A ``splittable`` search takes narrower
    criteria (``type``, ``service-date``), so a large one can be read in parts.
    """

    resource_type: str
    scope: str
    path: str  # relative to the FHIR base; {patient} is the beneficiary id
    search: bool
    withholdable: bool = True
    splittable: bool = False

    def first_url(self, base_url: str, patient_id: str, since: datetime | None = None) -> str:
        """The absolute URL of the first page for ``patient_id``, changes after ``since``."""
        path = self.path.format(patient=quote(patient_id, safe=""))
        url = f"{base_url.rstrip('/')}{endpoints.FHIR_PATH}{path}"
        if since is None:
            return url
        if not self.search:
            raise ValueError(f"{self.resource_type} reads cannot filter on _lastUpdated")
        stamp = since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return f"{url}&{urlencode({'_lastUpdated': f'gt{stamp}'})}"


def _search(resource_type: str, param: str, value: str) -> str:
    query = urlencode({param: value, "_count": EOB_PAGE_SIZE}, safe="{}/")
    return f"{resource_type}?{query}"


RESOURCE_QUERIES: tuple[ResourceQuery, ...] = (
    ResourceQuery("Patient", endpoints.SCOPE_PATIENT, "Patient/{patient}", search=False),
    ResourceQuery(
        "Coverage",
        endpoints.SCOPE_COVERAGE,
        _search("Coverage", "beneficiary", "Patient/{patient}"),
        search=True,
        withholdable=False,
    ),
    ResourceQuery(
        "ExplanationOfBenefit",
        endpoints.SCOPE_EOB,
        _search("ExplanationOfBenefit", "patient", "{patient}"),
        search=True,
        splittable=True,
    ),
)


def query_for(resource_type: str) -> ResourceQuery:
    """The query of a resource type (a KeyError for an unknown one)."""
    return next(q for q in RESOURCE_QUERIES if q.resource_type == resource_type)


class AccessTokens(Protocol):
    """Where the fetcher gets a valid access token, and a new one after a 401."""

    async def current(self) -> str: ...

    async def refreshed(self, stale: str) -> str: ...


async def _fetch_page(
    client: BlueButtonClient, url: str, access_token: str, query: ResourceQuery, patient_id: str
) -> Page:
    """GET one page (or the single resource of a read) and validate it."""
    if not endpoints.is_fhir_url(url, client.base_url):
        raise errors.ProtocolError("BB2 link leaves the configured base URL")
    response = await client.request(
        "GET",
        url,
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"},
    )
    if response.status_code != 200:
        raise fhir_error(response.status_code, response.content)
    check_content_type(response.headers.get("Content-Type"))
    parse = parse_search_page if query.search else parse_read
    # A page of 50 EOBs is about a megabyte of JSON: parse it off the event loop so that
    # other coroutines send their granted requests on time.
    return await asyncio.to_thread(parse, response.content, url, query.resource_type, patient_id)


async def _fetch_with_refresh(
    client: BlueButtonClient, url: str, tokens: AccessTokens, query: ResourceQuery, patient_id: str
) -> Page:
    token = await tokens.current()
    try:
        return await _fetch_page(client, url, token, query, patient_id)
    except errors.TokenExpired:
        token = await tokens.refreshed(token)
    try:
        return await _fetch_page(client, url, token, query, patient_id)
    except errors.TokenExpired as exc:
        raise errors.ReconsentRequired(
            "BB2 still answers 401 with a freshly refreshed token", status=401
        ) from exc


def _page_key(url: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """What identifies a page: its host, its path and its decoded, sorted query parameters
    (the host too: a link to another host is refused as such, not as a repeat)."""
    parts = urlsplit(url)
    query = tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return f"{parts.scheme}://{parts.netloc}".lower(), parts.path.rstrip("/"), query


async def iter_pages(
    client: BlueButtonClient,
    query: ResourceQuery,
    patient_id: str,
    tokens: AccessTokens,
    *,
    start_url: str | None = None,
    since: datetime | None = None,
) -> AsyncIterator[Page]:
    """Yield every page of ``query`` from ``start_url`` (a saved cursor) or the first page
    (of changes after ``since``, when given).

    Stops with a ProtocolError on a ``next`` link that leaves the base URL, repeats a page
    already seen in this run (however its query is ordered or encoded), or goes on past
    MAX_PAGES_PER_QUERY, so a looping server cannot keep a worker forever.
    """
    url: str | None = start_url or query.first_url(client.base_url, patient_id, since)
    seen: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    while url is not None:
        key = _page_key(url)
        if key in seen:
            raise errors.ProtocolError(f"{query.resource_type} next link repeats a page")
        if len(seen) >= MAX_PAGES_PER_QUERY:
            raise errors.ProtocolError(
                f"{query.resource_type} next links go on past {MAX_PAGES_PER_QUERY} pages"
            )
        seen.add(key)
        page = await _fetch_with_refresh(client, url, tokens, query, patient_id)
        yield page
        url = page.next_url
