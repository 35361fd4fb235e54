"""In-memory OAuth state of the emulator: authorization requests, codes, tokens and grants.

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


@dataclass(frozen=True)
class AuthCode:
    """An authorization code waiting to be exchanged once."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    patient_id: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class AccessToken:
    """A bearer token; `uses_left` counts down FHIR requests when an expiry was scheduled."""

    client_id: str
    patient_id: str
    scopes: tuple[str, ...]
    expires_at: float
    uses_left: int | None = None


@dataclass(frozen=True)
class RefreshToken:
    """A refresh token and the access token issued with it."""

    client_id: str
    patient_id: str
    scopes: tuple[str, ...]
    access_token: str


@dataclass
class Grant:
    """A beneficiary's data access grant to one app; `expires_at` None never lapses."""

    expires_at: float | None

    def lapsed(self, now: float) -> bool:
        """Whether the grant has timed out."""
        return self.expires_at is not None and now >= self.expires_at


class EmulatorState:
    """Everything that changes while the emulator runs, except the claim data."""

    def __init__(self, now: Clock = time.time, sleep: Sleep = asyncio.sleep) -> None:
        self.now = now
        self.sleep = sleep
        self._requests = RequestStats()
        self._auth_requests: dict[str, AuthRequest] = {}
        self._codes: dict[str, AuthCode] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._grants: dict[tuple[str, str], Grant] = {}
        self._faults: deque[int | None] = deque()
        self._search_faults: dict[str, deque[Fault | None]] = {}
        self._expiry_armed: dict[str, int] = {}

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

    def count_admitted(self, client_id: str | None, at: float) -> None:
        """Note the arrival of a request the app made and the rate limit let through."""
        self._requests.record_admitted(client_id, at)

    def stats(self) -> dict[str, Any]:
        """Request counters since the last reset.

        total, by_endpoint, by_status, by_client, by_second and max_per_second (the busiest
        calendar second) count every request; max_in_window and max_in_window_by_client are
        the most admitted app requests (no 429s, no browser pages) in any sliding second;
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
        code = secrets.token_urlsafe(24)
        self._codes[code] = AuthCode(
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            patient_id=patient_id,
            scopes=scopes,
            expires_at=self.now() + lifetime,
        )
        return code

    def code(self, code: str) -> AuthCode | None:
        """An unused, unexpired code."""
        found = self._codes.get(code)
        if found is None or self.now() >= found.expires_at:
            return None
        return found

    def consume_code(self, code: str) -> None:
        """Make a code unusable (after a successful exchange)."""
        self._codes.pop(code, None)

    # Grants

    def grant(self, client_id: str, patient_id: str) -> Grant | None:
        """The data access grant of this beneficiary to this app, lapsed or not."""
        return self._grants.get((client_id, patient_id))

    def save_grant(self, client_id: str, patient_id: str, expires_at: float | None) -> Grant:
        """Create or renew a grant on consent."""
        grant = Grant(expires_at=expires_at)
        self._grants[(client_id, patient_id)] = grant
        return grant

    def delete_grant(self, client_id: str, patient_id: str) -> None:
        """Remove a grant, as CMS's /v2/o/revoke/ or the beneficiary does."""
        self._grants.pop((client_id, patient_id), None)

    def delete_grants(self, patient_id: str) -> int:
        """Delete every grant of this beneficiary, as one who removes the app's access on
        Medicare.gov: tokens still authenticate, but FHIR calls answer 403."""
        keys = [key for key in self._grants if key[1] == patient_id]
        for key in keys:
            del self._grants[key]
        return len(keys)

    def lapse_grants(self, patient_id: str) -> int:
        """Make every grant of this beneficiary time out now; returns how many."""
        grants = [g for (_, patient), g in self._grants.items() if patient == patient_id]
        for grant in grants:
            grant.expires_at = self.now()
        return len(grants)

    # Tokens

    def issue_tokens(
        self, client_id: str, patient_id: str, scopes: tuple[str, ...], lifetime: int
    ) -> tuple[str, str]:
        """A new access token and its refresh token."""
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self._access[access] = AccessToken(
            client_id,
            patient_id,
            scopes,
            self.now() + lifetime,
            uses_left=self._expiry_armed.pop(patient_id, None),
        )
        self._refresh[refresh] = RefreshToken(client_id, patient_id, scopes, access)
        return access, refresh

    def access_token(self, token: str) -> AccessToken | None:
        """A live access token (not expired, revoked or used up)."""
        found = self._access.get(token)
        if found is None or self.now() >= found.expires_at or found.uses_left == 0:
            return None
        return found

    def use_access_token(self, token: str) -> AccessToken | None:
        """Like access_token, and spend one of its remaining uses if they are counted."""
        found = self.access_token(token)
        if found is not None and found.uses_left is not None:
            found.uses_left -= 1
        return found

    def refresh_token(self, token: str) -> RefreshToken | None:
        """A live refresh token."""
        return self._refresh.get(token)

    def client_of(self, token: str) -> str | None:
        """The client an access or refresh token was issued to, even if it is expired."""
        owner = self._access.get(token) or self._refresh.get(token)
        return None if owner is None else owner.client_id

    def revoke_refresh(self, token: str) -> None:
        """Kill a refresh token and the access token issued with it."""
        refresh = self._refresh.pop(token, None)
        if refresh is not None:
            self._access.pop(refresh.access_token, None)

    def revoke(self, token: str, client_id: str) -> str | None:
        """RFC 7009 revocation of the client's own token; returns its patient id if found."""
        if self.client_of(token) != client_id:
            return None
        owner = self._access.get(token) or self._refresh[token]
        self._access.pop(token, None)
        self.revoke_refresh(token)
        return owner.patient_id

    def expire_tokens_after(self, patient_id: str, requests: int) -> int:
        """Make this patient's live access tokens die after `requests` more FHIR requests.

        With no live token yet, the next one issued gets the countdown, so a test can make
        a token die in the middle of a sync that has not exchanged its code yet.
        """
        live = [
            token
            for key, token in self._access.items()
            if token.patient_id == patient_id and self.access_token(key) is not None
        ]
        for token in live:
            token.uses_left = requests
        if not live:
            self._expiry_armed[patient_id] = requests
        return len(live)
