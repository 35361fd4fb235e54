"""The FHIR views (Patient, Coverage, ExplanationOfBenefit) and userinfo."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.emulator import backend, resources
from worker.emulator.bearer import authenticate, bearer_token
from worker.emulator.claims import CLAIM_TYPES, Claim
from worker.emulator.context import Emulator, Handler, base_url, metered
from worker.emulator.oauth import COVERAGE_SCOPE, EOB_SCOPE, PATIENT_SCOPE, PROFILE_SCOPE
from worker.emulator.population import Beneficiary
from worker.emulator.responses import FHIR_JSON, NO_PERMISSION, NOT_FOUND, detail, json_response
from worker.emulator.search import (
    DateBound,
    Paging,
    SearchError,
    admits_all,
    check_start,
    day_start,
    page_links,
    parse_dates,
    parse_paging,
    parse_types,
    searchset,
)
from worker.emulator.templates import JsonObject

_FHIR = "/v2/fhir"
_EOB_CRITERIA = ("_lastUpdated", "type", "service-date")
# BB2's 502 when the backend fails or times out (FACTS "Errors and limits").
_BACKEND_TIMEOUT = "An error occurred contacting the FHIR server"
_View = Callable[[Emulator, Request, Beneficiary], Awaitable[Response]]


def fhir_routes(emulator: Emulator) -> list[Route]:
    """Reads and searches of the token's own beneficiary, plus /v2/connect/userinfo."""
    state, dataset = emulator.state, emulator.dataset

    async def token_client(request: Request) -> str | None:
        token = bearer_token(request)
        return None if token is None else state.tokens.client_of(token)

    def of_caller(scope: str, view: _View) -> Handler:
        """A view of the caller's own data: BB2's token and permission checks come first."""

        async def endpoint(request: Request) -> Response:
            token = authenticate(request, state, emulator.config, scope)
            if isinstance(token, Response):
                return token
            me = dataset.population.by_patient_id(token.patient_id)
            return detail(404, NOT_FOUND) if me is None else await view(emulator, request, me)

        return endpoint

    def fhir(path: str, name: str, handler: Handler, search: str | None = None) -> list[Route]:
        wrapped = metered(emulator, name, token_client, fhir=True, search=search)(handler)
        # BB2 answers with and without the trailing slash; no redirect in between.
        return [Route(f"{_FHIR}{path}{end}", wrapped, methods=["GET"]) for end in ("", "/")]

    return [
        *fhir("/Patient", "patient_search", of_caller(PATIENT_SCOPE, _patient_search)),
        *fhir("/Patient/{resource_id}", "patient_read", of_caller(PATIENT_SCOPE, _patient_read)),
        *fhir(
            "/Coverage",
            "coverage_search",
            of_caller(COVERAGE_SCOPE, _coverage_search),
            "Coverage",
        ),
        *fhir(
            "/Coverage/{resource_id}", "coverage_read", of_caller(COVERAGE_SCOPE, _coverage_read)
        ),
        *fhir(
            "/ExplanationOfBenefit",
            "eob_search",
            of_caller(EOB_SCOPE, _eob_search),
            "ExplanationOfBenefit",
        ),
        *fhir("/ExplanationOfBenefit/{resource_id}", "eob_read", of_caller(EOB_SCOPE, _eob_read)),
        Route(
            "/v2/connect/userinfo",
            metered(emulator, "userinfo", token_client)(of_caller(PROFILE_SCOPE, _userinfo)),
        ),
    ]


async def _patient_read(emulator: Emulator, request: Request, me: Beneficiary) -> Response:
    if request.path_params["resource_id"] != me.patient_id:
        return detail(404, NOT_FOUND)
    return _fhir(resources.patient(me))


async def _patient_search(emulator: Emulator, request: Request, me: Beneficiary) -> Response:
    """The search CMS's SDK reads the patient with: BB2 fills in `_id` with the token's
    patient and answers 404 for another one (FhirDataView.fetch_data)."""
    query = request.query_params
    if query.get("_id", me.patient_id) != me.patient_id:
        return detail(404, NOT_FOUND)
    try:
        paging = parse_paging(query)
        check_start(paging, 1)
    except SearchError as error:
        return detail(400, str(error))
    page = [resources.patient(me)][paging.start : paging.start + paging.count]
    criteria = [("_id", me.patient_id)]
    return await _bundle(request, emulator, "Patient", paging, 1, page, criteria)


async def _coverage_read(emulator: Emulator, request: Request, me: Beneficiary) -> Response:
    found = [r for r in _coverages(me) if r["id"] == request.path_params["resource_id"]]
    return _fhir(found[0]) if found else detail(404, NOT_FOUND)


async def _coverage_search(emulator: Emulator, request: Request, me: Beneficiary) -> Response:
    query = request.query_params
    if not _is_subject(query.get("beneficiary"), me):
        return detail(403, NO_PERMISSION)
    try:
        paging = parse_paging(query)
        updated = parse_dates(query.getlist("_lastUpdated"), "_lastUpdated")
    except SearchError as error:
        return detail(400, str(error))
    moment = resources.demographics_updated(me)
    matches = _coverages(me) if admits_all(updated, moment) else []
    try:
        check_start(paging, len(matches))
    except SearchError as error:
        return detail(400, str(error))
    page = matches[paging.start : paging.start + paging.count]
    criteria = [("beneficiary", f"Patient/{me.patient_id}"), *_echo(query, "_lastUpdated")]
    return await _bundle(request, emulator, "Coverage", paging, len(matches), page, criteria)


async def _eob_read(emulator: Emulator, request: Request, me: Beneficiary) -> Response:
    wanted = request.path_params["resource_id"]
    found = [c for c in emulator.dataset.claims(me) if c.eob_id == wanted]
    return _fhir(resources.eob(found[0], me)) if found else detail(404, NOT_FOUND)


async def _eob_search(emulator: Emulator, request: Request, me: Beneficiary) -> Response:
    query = request.query_params
    if not _is_subject(query.get("patient"), me):
        return detail(403, NO_PERMISSION)
    try:
        paging = parse_paging(query)
        keep = _eob_filter(query)
        claims = [claim for claim in emulator.dataset.claims(me) if keep.admits(claim)]
        check_start(paging, len(claims))
    except SearchError as error:
        return detail(400, str(error))
    if emulator.config.backend_cost:
        # FACTS "Errors and limits": the whole result is built for every page; 502 past 30 s.
        cost = backend.page_cost(len(claims))
        emulator.state.count_backend(min(cost, backend.TIMEOUT_SECONDS))
        await emulator.state.sleep(min(cost, backend.TIMEOUT_SECONDS))
        if backend.times_out(cost):
            return detail(502, _BACKEND_TIMEOUT)
    chosen = claims[paging.start : paging.start + paging.count]
    # Rendering 50 EOBs takes tens of milliseconds: off the event loop, so that the
    # throttle sees other requests when they arrive, as BB2's edge would.
    page = await run_in_threadpool(lambda: [resources.eob(claim, me) for claim in chosen])
    criteria = [("patient", me.patient_id)]
    criteria += [pair for name in _EOB_CRITERIA for pair in _echo(query, name)]
    return await _bundle(
        request, emulator, "ExplanationOfBenefit", paging, len(claims), page, criteria
    )


async def _userinfo(emulator: Emulator, request: Request, me: Beneficiary) -> Response:
    return json_response(resources.userinfo(me, datetime.fromtimestamp(emulator.state.now(), UTC)))


async def _bundle(
    request: Request,
    emulator: Emulator,
    resource_type: str,
    paging: Paging,
    total: int,
    page: list[JsonObject],
    criteria: list[tuple[str, str]],
) -> Response:
    url = f"{base_url(request)}{_FHIR}/{resource_type}"
    links = page_links(url, paging, total, criteria)
    loaded = resources.instant(emulator.dataset.loaded_at)
    body = await run_in_threadpool(orjson.dumps, searchset(page, total, links, loaded))
    return Response(body, media_type=FHIR_JSON)


@dataclass(frozen=True)
class _EobFilter:
    types: frozenset[str] | None
    updated: tuple[DateBound, ...]
    served: tuple[DateBound, ...]

    def admits(self, claim: Claim) -> bool:
        # BB2 passes type and repeated service-date on to BFD (apps/fhir/bluebutton/views/
        # search.py:128-159, 181-184); BFD matches service-date on a claim's service
        # completion date (its RFC 0007-service-date-filter), billablePeriod.end here.
        if self.types is not None and claim.claim_type not in self.types:
            return False
        return admits_all(self.updated, claim.last_updated) and admits_all(
            self.served, day_start(claim.service_end)
        )


def _eob_filter(query: QueryParams) -> _EobFilter:
    return _EobFilter(
        types=parse_types(query.getlist("type"), CLAIM_TYPES),
        updated=parse_dates(query.getlist("_lastUpdated"), "_lastUpdated"),
        served=parse_dates(query.getlist("service-date"), "service-date"),
    )


def _is_subject(value: str | None, me: Beneficiary) -> bool:
    """A search may name its patient (`-1999...` or `Patient/-1999...`); BB2 fills it in if not."""
    return value is None or value.removeprefix("Patient/") == me.patient_id


def _echo(query: QueryParams, name: str) -> list[tuple[str, str]]:
    """Search criteria repeated in the paging links."""
    return [(name, value) for value in query.getlist(name)]


def _coverages(me: Beneficiary) -> list[JsonObject]:
    return [resources.coverage(me, part) for part in resources.COVERAGE_PARTS]


def _fhir(body: JsonObject) -> Response:
    return json_response(body, media_type=FHIR_JSON)
