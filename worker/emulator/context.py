"""What every route needs (config, state, data, rate limit), and the metering wrapper."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from worker.emulator import pages
from worker.emulator.bad_answers import spoil
from worker.emulator.bearer import bearer_token
from worker.emulator.chaos import Chaos, DroppedResponse, dropped
from worker.emulator.config import EmulatorConfig
from worker.emulator.data import Dataset
from worker.emulator.edge import EdgeThrottle
from worker.emulator.faults import FaultKind
from worker.emulator.ratelimit_headers import UNTHROTTLED, TokenThrottle
from worker.emulator.responses import detail, throttled
from worker.emulator.state import EmulatorState
from worker.emulator.stats import DROPPED, SlidingWindow

Handler = Callable[[Request], Awaitable[Response]]
ClientResolver = Callable[[Request], Awaitable[str | None]]
_FAULT_MESSAGE = "An error occurred contacting the FHIR server"


@dataclass(frozen=True)
class Emulator:
    """One emulator instance's parts, shared by its routes."""

    config: EmulatorConfig
    state: EmulatorState
    dataset: Dataset
    limiter: SlidingWindow
    chaos: Chaos
    edge: EdgeThrottle
    token_throttle: TokenThrottle = field(default_factory=TokenThrottle)


def base_url(request: Request) -> str:
    """scheme://host[:port] the client used, for absolute links."""
    return f"{request.url.scheme}://{request.url.netloc}"


def form_field(form: FormData, name: str) -> str:
    """A text field of a form, or "" when absent (or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def metered(
    emulator: Emulator,
    name: str,
    client_of: ClientResolver,
    *,
    fhir: bool = False,
    browser: bool = False,
    search: str | None = None,
) -> Callable[[Handler], Handler]:
    """Wrap a BB2 endpoint: rate limit per client id (the edge's limit, announced by no
    header), count it, add BB2's own X-RateLimit headers, and on FHIR views answer injected
    and seeded faults.

    Pages the beneficiary's browser loads (`browser`) are counted but never throttled: the
    limit is on the app's own calls. A FHIR search names its resource type (`search`) to
    take the faults ordered for that search as well.
    """

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            # The clock is read on arrival, as BB2's edge would: resolving the client can
            # take a while (the first form parsed imports the form parser), and a late
            # timestamp would crowd the next second. Windows keep arrivals sorted.
            now = emulator.state.now()
            client_id = await client_of(request)
            if browser:
                response = await handler(request)
            else:
                response = await _answer(
                    emulator, request, handler, client_id, now, fhir=fhir, search=search
                )
            response.headers.update(_rate_limit_headers(emulator, request, response, now, fhir))
            status = DROPPED if isinstance(response, DroppedResponse) else response.status_code
            emulator.state.count_request(name, status, client_id, now)
            return response

        return endpoint

    return wrap


async def _answer(
    emulator: Emulator,
    request: Request,
    handler: Handler,
    client_id: str | None,
    now: float,
    *,
    fhir: bool,
    search: str | None,
) -> Response:
    """An app's call: throttled (by the edge, then the app's limit), or admitted and answered
    (with chaos on FHIR views).

    Admin faults win over seeded ones: a status fault for any FHIR request first, then the
    search's own fault, which answers a 5xx or spoils the search's answer.
    """
    emulator.state.count_arrival(client_id, now)
    edge_wait = None if client_id is None else emulator.edge.admit(client_id, now)
    if edge_wait is not None:
        told = edge_wait if emulator.edge.retry_after else 0
        emulator.state.count_throttled(client_id or "", now, told)
        return emulator.edge.refusal(edge_wait)
    retry_after = None if client_id is None else emulator.limiter.admit(client_id, now)
    if retry_after is not None:
        emulator.state.count_throttled(client_id or "", now, retry_after)
        return throttled(retry_after)
    emulator.state.count_admitted(client_id, now)
    if not fhir:
        return await handler(request)
    if _edge_refuses(emulator, request, now):
        return HTMLResponse(pages.edge_forbidden_page(), status_code=403)
    # Taken on admission, so that "the next N requests" of an admin fault keep their order
    # even when slow answers finish out of order.
    fault = emulator.state.take_fault()
    ordered = None if search is None else emulator.state.take_search_fault(search)
    fate = emulator.chaos.draw()
    if fate.delay:
        await emulator.state.sleep(fate.delay)
    if fault is None and ordered is not None and ordered.kind is FaultKind.STATUS:
        fault = ordered.status
    if fault is None and ordered is None:
        fault = fate.fault
    if fault is not None:
        return detail(fault, _FAULT_MESSAGE)
    response = await handler(request)
    if ordered is not None:
        return await spoil(ordered, request, response)
    return await dropped(request, response) if fate.drop else response


def _rate_limit_headers(
    emulator: Emulator, request: Request, response: Response, now: float, fhir: bool
) -> dict[str, str]:
    """BB2's X-RateLimit-* for an answer: none on the edge's own answers (its 429s and HTML
    pages), numbers on FHIR answers that passed authentication and permissions, and the
    text `None` on the rest (see ratelimit_headers)."""
    if response.status_code == 429 or (fhir and response.media_type == "text/html"):
        return {}
    token = bearer_token(request)
    if not fhir or token is None or response.status_code in (401, 403):
        return UNTHROTTLED
    return emulator.token_throttle.headers(token, now)


def _edge_refuses(emulator: Emulator, request: Request, now: float) -> bool:
    """Whether an admin-ordered edge block refuses this FHIR request of its beneficiary."""
    value = bearer_token(request)
    token = None if value is None else emulator.state.tokens.stored_access(value)
    return token is not None and emulator.state.switches.edge_refuses(token.patient_id, now)
