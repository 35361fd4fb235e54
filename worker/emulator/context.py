"""What every route needs (config, state, data, rate limit), and the metering wrapper."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from worker.emulator.config import EmulatorConfig
from worker.emulator.data import Dataset
from worker.emulator.responses import detail, throttled
from worker.emulator.state import EmulatorState
from worker.emulator.stats import SlidingWindow

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
) -> Callable[[Handler], Handler]:
    """Wrap a BB2 endpoint: rate limit per client id, count it, and on FHIR views add the
    X-RateLimit headers and answer injected faults.

    Pages the beneficiary's browser loads (`browser`) are counted but never throttled: the
    limit is on the app's own calls.
    """

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            now = emulator.state.now()
            client_id = await client_of(request)
            throttle_as = None if browser else client_id
            response = await _answer(emulator, request, handler, throttle_as, now, fhir=fhir)
            if fhir:
                response.headers.update(emulator.limiter.headers(client_id, now))
            emulator.state.count_request(name, response.status_code, client_id, now)
            return response

        return endpoint

    return wrap


async def _answer(
    emulator: Emulator,
    request: Request,
    handler: Handler,
    throttle_as: str | None,
    now: float,
    *,
    fhir: bool,
) -> Response:
    retry_after = None if throttle_as is None else emulator.limiter.admit(throttle_as, now)
    if retry_after is not None:
        return throttled(retry_after)
    fault = emulator.state.take_fault() if fhir else None
    if fault is not None:
        return detail(fault, _FAULT_MESSAGE)
    return await handler(request)
