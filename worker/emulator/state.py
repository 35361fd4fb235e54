"""In-memory state of the emulator: request counts, faults, authorization requests, and
(in `tokens` and `switches`) codes, tokens, grants and the CMS-side switches.

All times come from one injectable clock (epoch seconds), and the delays of slow answers
from an injectable sleep, so tests can move time without sleeping.
"""

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from worker.emulator.faults import Fault, FaultOrder
from worker.emulator.stats import RequestStats
from worker.emulator.switches import CmsSwitches
from worker.emulator.tokens import AuthCode, Grant, TokenStore

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class AuthRequest:
    """An authorization in progress: between /authorize and the consent answer."""

    request_id: str
    client_id: str
    redirect_uri: str
    state: str
    code_challenge: str
    scopes: tuple[str, ...]
    csrf: str
    patient_id: str | None = None


class EmulatorState:
    """Everything that changes while the emulator runs, except the claim data."""

    def __init__(self, now: Clock = time.time, sleep: Sleep = asyncio.sleep) -> None:
        self.now = now
        self.sleep = sleep
        self._requests = RequestStats()
        self._auth_requests: dict[str, AuthRequest] = {}
        self.tokens = TokenStore(now)
        self.switches = CmsSwitches()
        self._faults: deque[int | None] = deque()
        self._search_faults: dict[str, deque[Fault | None]] = {}

    # Requests and faults

    def count_request(
        self, endpoint: str, status: int | str, client_id: str | None, at: float
    ) -> None:
        """Count one answered BB2 request that arrived `at` (admin calls are not counted).

        `status` is the HTTP status, or stats.DROPPED for a connection dropped on purpose.
        """
        self._requests.record(endpoint, status, client_id, at)

    def count_arrival(self, client_id: str | None, at: float) -> None:
        """Note an app request before the rate limit looks at it (for cool-down counting)."""
        self._requests.record_arrival(client_id, at)

    def count_throttled(self, client_id: str, at: float, retry_after: int) -> None:
        """Note a 429 and the cool-down it asked for."""
        self._requests.record_throttled(client_id, at, retry_after)

    def count_backend(self, seconds: float) -> None:
        """Note the time the backend spent on a search page (with backend_cost on)."""
        self._requests.backend_seconds += seconds

    def count_admitted(self, client_id: str | None, at: float) -> None:
        """Note the arrival of a request the app made and the rate limit let through."""
        self._requests.record_admitted(client_id, at)

    def stats(self) -> dict[str, Any]:
        """Request counters since the last reset.

        total, by_endpoint, by_status, by_client, by_second and max_per_second (the busiest
        calendar second) count every request, throttled_by_second the 429s, backend_seconds
        the time the modelled backend spent on search pages; max_in_window
        and max_in_window_by_client are the most admitted app requests (no 429s, no browser
        pages) in any sliding second;
        during_cooldown counts app requests that arrived while a 429's Retry-After still ran
        (those within 50 ms of the 429 were already on their way and do not count);
        first_request_at and last_request_at are the arrival times (epoch seconds, or None)
        of the first and the last request counted in total.
        """
        return self._requests.snapshot()

    def reset_stats(self) -> None:
        """Start counting from zero."""
        self._requests = RequestStats()

    def inject_faults(self, status: int, count: int, after: int = 0) -> None:
        """Make `count` FHIR requests fail with `status` (e.g. 502), once `after` more passed.

        Faults queue behind those already injected; `None` entries are the requests let through.
        """
        self._faults.extend([None] * after + [status] * count)

    def take_fault(self) -> int | None:
        """The status the next FHIR request must fail with, if a fault is pending."""
        return self._faults.popleft() if self._faults else None

    def order_faults(self, order: FaultOrder) -> None:
        """Queue a validated admin order: a status fault on any FHIR request (no `search`)
        goes to the inject_faults queue; the others to the queue of their search, where
        `after` counts only the searches of that resource type.
        """
        if order.search is None:
            self.inject_faults(order.fault.status, order.count, order.after)
            return
        queue = self._search_faults.setdefault(order.search, deque())
        queue.extend([None] * order.after + [order.fault] * order.count)

    def take_search_fault(self, search: str) -> Fault | None:
        """The fault of the next search of this resource type, if one is pending."""
        queue = self._search_faults.get(search)
        return queue.popleft() if queue else None

    def pending_faults(self) -> int:
        """How many ordered faults no request has taken yet, in every queue."""
        queues: list[deque[Any]] = [self._faults, *self._search_faults.values()]
        return sum(1 for queue in queues for entry in queue if entry is not None)

    # Authorization requests and codes

    def open_request(
        self, client_id: str, redirect_uri: str, state: str, challenge: str, scopes: tuple[str, ...]
    ) -> AuthRequest:
        """Remember a validated /authorize call until the beneficiary answers."""
        request = AuthRequest(
            request_id=secrets.token_hex(16),
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=challenge,
            scopes=scopes,
            csrf=secrets.token_urlsafe(24),
        )
        self._auth_requests[request.request_id] = request
        return request

    def auth_request(self, request_id: str) -> AuthRequest | None:
        """The authorization in progress with this id, if any."""
        return self._auth_requests.get(request_id)

    def close_request(self, request_id: str) -> None:
        """Forget an answered authorization."""
        self._auth_requests.pop(request_id, None)

    def issue_code(
        self, request: AuthRequest, patient_id: str, scopes: tuple[str, ...], lifetime: int
    ) -> str:
        """A single-use code for a request the beneficiary consented to."""
        code = AuthCode(
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            patient_id=patient_id,
            scopes=scopes,
            expires_at=self.now() + lifetime,
        )
        return self.tokens.save_code(code)

    def issue_tokens(
        self, client_id: str, patient_id: str, scopes: tuple[str, ...], lifetime: int
    ) -> tuple[str, str]:
        """A new access token and its refresh token (every issue goes through here, so a
        test can record what the emulator handed out)."""
        return self.tokens.issue_tokens(client_id, patient_id, scopes, lifetime)

    def grant(self, client_id: str, patient_id: str) -> Grant | None:
        """The data access grant of this beneficiary to this app, lapsed or not."""
        return self.tokens.grant(client_id, patient_id)
