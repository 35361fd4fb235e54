"""Admin switches for CMS-side events, and what CMS holds for a beneficiary (not BB2 routes)::

    POST /_emulator/apps/inactive {"client_id": "...", "inactive": true}
    POST /_emulator/edge/forbid   {"patient_id": "...", "seconds": 6} (and/or "count": N)
    POST /_emulator/edge/rate     {"rate": 5, "retry_after": false} (rate null: no edge)
    POST /_emulator/faults/refresh {"status": 502, "count": 1}
    GET  /_emulator/grants?patient_id=-19990000000001

An inactive app's FHIR calls answer 401 and its token calls and revokes 403 (FACTS
"Authorization"). A forbidden beneficiary's FHIR requests meet an edge's HTML 403 (FACTS
"Errors and limits"), and so does an app over the edge's rate (a 429, see ``edge``). A
refresh fault rotates the token, then answers 502 or 404 (FACTS
"Authorization"). The grants listing shows every app the beneficiary has a grant or a live
token with, so a test can tell that nothing is left.
"""

from typing import Any

from starlette.routing import Route

from worker.emulator.admin_routes import (
    AdminError,
    find_beneficiary,
    get_endpoint,
    number_argument,
    post_endpoint,
)
from worker.emulator.context import Emulator
from worker.emulator.faults import MAX_REQUESTS
from worker.emulator.switches import REFRESH_FAULT_MESSAGES


def cms_admin_routes(emulator: Emulator) -> list[Route]:
    """Routes of the CMS-side switches and the grants listing."""
    state, config = emulator.state, emulator.config

    def inactive(body: dict[str, Any]) -> Any:
        client = config.client(str(body.get("client_id", "")))
        if client is None:
            raise AdminError(404, f"unknown client_id {body.get('client_id')!r}")
        flag = body.get("inactive", True)
        if not isinstance(flag, bool):
            raise AdminError(400, "inactive must be true or false")
        state.switches.set_inactive(client.client_id, flag)
        return {"client_id": client.client_id, "inactive": flag}

    def forbid(body: dict[str, Any]) -> Any:
        patient_id = find_beneficiary(emulator, body).patient_id
        seconds = _optional(body, "seconds")
        count = _optional(body, "count")
        if seconds is None and count is None:
            raise AdminError(400, "give seconds, count or both")
        until = None if seconds is None else state.now() + seconds
        state.switches.forbid(patient_id, until, count)
        return {"patient_id": patient_id, "seconds": seconds, "count": count}

    def edge_rate(body: dict[str, Any]) -> Any:
        rate = _optional(body, "rate")
        retry_after = body.get("retry_after", False)
        if rate == 0 or not isinstance(retry_after, bool):
            raise AdminError(400, "rate must be at least 1 (or null), retry_after true or false")
        emulator.edge.configure(rate, retry_after)
        return {"rate": rate, "retry_after": retry_after}

    def refresh_faults(body: dict[str, Any]) -> Any:
        status = body.get("status", 502)
        if type(status) is not int or status not in REFRESH_FAULT_MESSAGES:
            raise AdminError(400, f"status must be one of {sorted(REFRESH_FAULT_MESSAGES)}")
        count = number_argument(body, "count", 1)
        if not 1 <= count <= MAX_REQUESTS:
            raise AdminError(400, f"count must be between 1 and {MAX_REQUESTS}")
        pending = state.switches.order_refresh_faults(status, count)
        return {"status": status, "count": count, "pending": pending}

    def grants(query: dict[str, Any]) -> Any:
        patient_id = find_beneficiary(emulator, query).patient_id
        return {"grants": state.tokens.describe(patient_id)}

    return [
        Route("/_emulator/apps/inactive", post_endpoint(inactive), methods=["POST"]),
        Route("/_emulator/edge/forbid", post_endpoint(forbid), methods=["POST"]),
        Route("/_emulator/edge/rate", post_endpoint(edge_rate), methods=["POST"]),
        Route("/_emulator/faults/refresh", post_endpoint(refresh_faults), methods=["POST"]),
        Route("/_emulator/grants", get_endpoint(grants)),
    ]


def _optional(body: dict[str, Any], name: str) -> int | None:
    """A non-negative whole number argument, or None when absent."""
    return None if body.get(name) is None else number_argument(body, name, 0)
