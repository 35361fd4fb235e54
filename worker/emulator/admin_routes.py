"""The emulator's own API under /_emulator/ (not part of BB2): stats, time-outs, data changes,
and faults (see `faults` for the orders it takes).

These calls are not metered: they must not disturb the request counts they report.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.emulator.claims import EASTERN
from worker.emulator.context import Emulator
from worker.emulator.data import DataChangeError
from worker.emulator.faults import FaultOrderError, parse_fault_order
from worker.emulator.population import Beneficiary
from worker.emulator.responses import detail, json_response

AdminHandler = Callable[[dict[str, Any]], Any]


class AdminError(ValueError):
    """A bad admin call; `status` is 400 or 404."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def admin_routes(emulator: Emulator) -> list[Route]:
    """Routes of the admin API."""
    state, dataset = emulator.state, emulator.dataset

    def beneficiary(body: dict[str, Any]) -> Beneficiary:
        return find_beneficiary(emulator, body)

    def now() -> datetime:
        return datetime.fromtimestamp(state.now(), EASTERN)

    def stats(_: dict[str, Any]) -> Any:
        return state.stats()

    def reset_stats(_: dict[str, Any]) -> Any:
        state.reset_stats()
        return state.stats()

    def beneficiaries(query: dict[str, Any]) -> Any:
        offset = number_argument(query, "offset", 0)
        limit = number_argument(query, "limit", len(dataset.population))
        end = min(offset + limit, len(dataset.population))
        return [_describe(emulator, dataset.population.get(i)) for i in range(offset, end)]

    def expire_tokens(body: dict[str, Any]) -> Any:
        patient_id = beneficiary(body).patient_id
        count = state.tokens.expire_tokens_after(
            patient_id, number_argument(body, "after_requests", 0)
        )
        return {"patient_id": patient_id, "tokens": count}

    def lapse_grants(body: dict[str, Any]) -> Any:
        patient_id = beneficiary(body).patient_id
        return {"patient_id": patient_id, "grants": state.tokens.lapse_grants(patient_id)}

    def delete_grants(body: dict[str, Any]) -> Any:
        patient_id = beneficiary(body).patient_id
        return {"patient_id": patient_id, "grants": state.tokens.delete_grants(patient_id)}

    def touch(body: dict[str, Any]) -> Any:
        return {
            "touched": dataset.touch(beneficiary(body), number_argument(body, "count", 1), now())
        }

    def add_claim(body: dict[str, Any]) -> Any:
        claim_type = str(body.get("claim_type", "carrier"))
        return {"added": dataset.add_claim(beneficiary(body), claim_type, now())}

    def remove_claim(body: dict[str, Any]) -> Any:
        eob_id = str(body.get("eob_id", ""))
        dataset.remove_claim(beneficiary(body), eob_id, now())
        return {"removed": eob_id}

    def faults(body: dict[str, Any]) -> Any:
        try:
            order = parse_fault_order(body)
        except FaultOrderError as error:
            raise AdminError(400, str(error)) from None
        state.order_faults(order)
        return {**order.describe(), "pending": state.pending_faults()}

    return [
        Route("/_emulator/stats", get_endpoint(stats)),
        Route("/_emulator/stats/reset", post_endpoint(reset_stats), methods=["POST"]),
        Route("/_emulator/beneficiaries", get_endpoint(beneficiaries)),
        Route("/_emulator/tokens/expire", post_endpoint(expire_tokens), methods=["POST"]),
        Route("/_emulator/grants/lapse", post_endpoint(lapse_grants), methods=["POST"]),
        Route("/_emulator/grants/delete", post_endpoint(delete_grants), methods=["POST"]),
        Route("/_emulator/claims/touch", post_endpoint(touch), methods=["POST"]),
        Route("/_emulator/claims/add", post_endpoint(add_claim), methods=["POST"]),
        Route("/_emulator/claims/remove", post_endpoint(remove_claim), methods=["POST"]),
        Route("/_emulator/faults", post_endpoint(faults), methods=["POST"]),
    ]


def find_beneficiary(emulator: Emulator, arguments: dict[str, Any]) -> Beneficiary:
    """The beneficiary an admin call names by `patient_id`; 404 if there is none."""
    found = emulator.dataset.population.by_patient_id(str(arguments.get("patient_id", "")))
    if found is None:
        raise AdminError(404, f"unknown patient_id {arguments.get('patient_id')!r}")
    return found


def _describe(emulator: Emulator, beneficiary: Beneficiary) -> dict[str, Any]:
    return {
        "username": beneficiary.username,
        "password": beneficiary.password,
        "patient_id": beneficiary.patient_id,
        "eob_count": emulator.dataset.eob_count(beneficiary),
    }


def get_endpoint(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
    """An admin GET route: the handler gets the query parameters."""

    async def endpoint(request: Request) -> Response:
        return _run(handler, dict(request.query_params))

    return endpoint


def post_endpoint(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
    """An admin POST route: the handler gets the JSON object of the body."""

    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return detail(400, "the body must be a JSON object")
        if not isinstance(body, dict):
            return detail(400, "the body must be a JSON object")
        return _run(handler, body)

    return endpoint


def _run(handler: AdminHandler, arguments: dict[str, Any]) -> Response:
    try:
        return json_response(handler(arguments))
    except AdminError as error:
        return detail(error.status, str(error))
    except DataChangeError as error:
        return detail(400, str(error))


def number_argument(values: dict[str, Any], name: str, default: int) -> int:
    """A non-negative integer argument (query strings give text, JSON gives numbers)."""
    raw = values.get(name, default)
    try:
        number = int(raw)
    except (TypeError, ValueError):
        raise AdminError(400, f"{name} must be an integer") from None
    if number < 0:
        raise AdminError(400, f"{name} must not be negative")
    return number
