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
        found = dataset.population.by_patient_id(str(body.get("patient_id", "")))
        if found is None:
            raise AdminError(404, f"unknown patient_id {body.get('patient_id')!r}")
        return found

    def now() -> datetime:
        return datetime.fromtimestamp(state.now(), EASTERN)

    def stats(_: dict[str, Any]) -> Any:
        return state.stats()

    def reset_stats(_: dict[str, Any]) -> Any:
        state.reset_stats()
        return state.stats()

    def beneficiaries(query: dict[str, Any]) -> Any:
        offset = _number(query, "offset", 0)
        limit = _number(query, "limit", len(dataset.population))
        end = min(offset + limit, len(dataset.population))
        return [_describe(emulator, dataset.population.get(i)) for i in range(offset, end)]

    def expire_tokens(body: dict[str, Any]) -> Any:
        patient_id = beneficiary(body).patient_id
        count = state.expire_tokens_after(patient_id, _number(body, "after_requests", 0))
        return {"patient_id": patient_id, "tokens": count}

    def lapse_grants(body: dict[str, Any]) -> Any:
        patient_id = beneficiary(body).patient_id
        return {"patient_id": patient_id, "grants": state.lapse_grants(patient_id)}

    def delete_grants(body: dict[str, Any]) -> Any:
        patient_id = beneficiary(body).patient_id
        return {"patient_id": patient_id, "grants": state.delete_grants(patient_id)}

    def touch(body: dict[str, Any]) -> Any:
        return {"touched": dataset.touch(beneficiary(body), _number(body, "count", 1), now())}

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
        Route("/_emulator/stats", _get(stats)),
        Route("/_emulator/stats/reset", _post(reset_stats), methods=["POST"]),
        Route("/_emulator/beneficiaries", _get(beneficiaries)),
        Route("/_emulator/tokens/expire", _post(expire_tokens), methods=["POST"]),
        Route("/_emulator/grants/lapse", _post(lapse_grants), methods=["POST"]),
        Route("/_emulator/grants/delete", _post(delete_grants), methods=["POST"]),
        Route("/_emulator/claims/touch", _post(touch), methods=["POST"]),
        Route("/_emulator/claims/add", _post(add_claim), methods=["POST"]),
        Route("/_emulator/claims/remove", _post(remove_claim), methods=["POST"]),
        Route("/_emulator/faults", _post(faults), methods=["POST"]),
    ]


def _describe(emulator: Emulator, beneficiary: Beneficiary) -> dict[str, Any]:
    return {
        "username": beneficiary.username,
        "password": beneficiary.password,
        "patient_id": beneficiary.patient_id,
        "eob_count": emulator.dataset.eob_count(beneficiary),
    }


def _get(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return _run(handler, dict(request.query_params))

    return endpoint


def _post(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
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


def _number(values: dict[str, Any], name: str, default: int) -> int:
    """A non-negative integer argument (query strings give text, JSON gives numbers)."""
    raw = values.get(name, default)
    try:
        number = int(raw)
    except (TypeError, ValueError):
        raise AdminError(400, f"{name} must be an integer") from None
    if number < 0:
        raise AdminError(400, f"{name} must not be negative")
    return number
