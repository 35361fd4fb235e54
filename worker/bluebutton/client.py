"""The one way out to BB2: every request takes a budget slot and gets transient retries."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx
import structlog

from worker import errors, metrics
from worker.bluebutton import endpoints
from worker.bluebutton.endpoints import endpoint_kind
from worker.bluebutton.retry import RetryPolicy, is_transient_status, parse_retry_after
from worker.constants import MAX_RESPONSE_BYTES

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Answer:
    """BB2's answer, read whole (and never beyond MAX_RESPONSE_BYTES)."""

    status_code: int
    headers: httpx.Headers
    content: bytes


async def _read_limited(response: httpx.Response) -> bytes:
    """The decoded body, refused as soon as it outgrows a page: a gzipped answer a few KB
    on the wire can unpack to gigabytes, so the limit is checked while reading."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise errors.ProtocolError(f"BB2 announced a response of {declared} bytes, too large")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise errors.ProtocolError(
                f"BB2 response exceeds {MAX_RESPONSE_BYTES} bytes, too large"
            )
    return bytes(body)


class Budget(Protocol):
    """What the client needs from a request budget (see ``budget.RequestBudget``)."""

    current_rate: float

    async def acquire(self) -> float: ...

    async def pause(self, seconds: float) -> None: ...

    async def slow_down(self, retry_after: float | None = None) -> None: ...


def build_http_client(base_url: str, *, timeout: float, max_connections: int) -> httpx.AsyncClient:
    """The shared httpx client: TLS verification on, bounded sockets, no redirects."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        follow_redirects=False,
        headers={"User-Agent": "bluebutton-ingest/0.1"},
    )


async def warm_up(http: httpx.AsyncClient, budget: Budget) -> bool:
    """Open a connection to BB2 before the first request of the app whose ``budget`` it
    takes a slot of, with the public CapabilityStatement: a first request that has to
    connect leaves late and would crowd the next second at the server. The edge counts
    every request to the host against the app (FACTS.md, Errors and limits), token or not,
    so the warm-up waits for its slot like any other. False when BB2 cannot be reached
    (the jobs will find out and retry)."""
    await budget.acquire()
    try:
        response = await http.get(endpoints.METADATA_PATH)
    except httpx.HTTPError as exc:
        log.warning("bb2_unreachable_at_start", error=type(exc).__name__)
        return False
    return response.status_code == 200


# Failures before a request could leave: it never reached BB2.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _for_the_caller(status: int, *, once: bool) -> bool:
    """Whether an answer goes to the caller rather than being repeated: any status but a
    transient one; for a single-use request any but a 429, since a 5xx may come after CMS
    spent it (a refresh that rotated the token, then failed: FACTS.md, Authorization)."""
    return not is_transient_status(status) or (once and status != 429)


class BlueButtonClient:
    """Sends requests to BB2 through the shared budget, repeating transient failures.

    A 429 pauses the whole app's budget for its Retry-After; 5xx, timeouts and broken
    connections are repeated with full-jitter backoff. When the attempts run out the last
    :class:`~worker.errors.RetryableError` is raised, and the job decides to come back later.
    Any other answer is returned for the caller to interpret.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        budget: Budget,
        *,
        priority: str = "interactive",
        app: str = "default",
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.http = http
        self.base_url = str(http.base_url).rstrip("/")
        self._budget = budget
        self.priority = priority
        self.app = app
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rand = rand

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        auth: httpx.BasicAuth | None = None,
        once: bool = False,
        send_by: float | None = None,
        slot_taken: bool = False,
    ) -> Answer:
        """Send one logical request; the response has any status but a transient one.

        ``once``: the request spends something single-use (a code, a rolling refresh
        token), so it is repeated only when it certainly never reached BB2 (refused
        connections, 429s); otherwise the failure, 5xx answers included, goes to the caller,
        whose retry can tell a spent code from a bad one.
        ``send_by`` (Unix seconds): a request whose slot comes later is not sent
        (:class:`~worker.errors.CodeExpired`): an authorization code that old is dead.
        ``slot_taken``: the caller already took the first attempt's slot (:meth:`take_slot`).
        """
        last: errors.RetryableError | None = None
        for attempt in range(self._policy.max_attempts):
            await self._turn(attempt, last, slot_taken=slot_taken, send_by=send_by)
            try:
                response = await self._send(method, url, headers=headers, data=data, auth=auth)
            except errors.TransportError as exc:
                if once and exc.maybe_delivered:
                    raise
                last = exc
                continue
            if _for_the_caller(response.status_code, once=once):
                return response
            last = self._transient(response)
        assert last is not None
        raise last

    async def _turn(
        self,
        attempt: int,
        last: errors.RetryableError | None,
        *,
        slot_taken: bool,
        send_by: float | None,
    ) -> None:
        """Before an attempt: back off after a failure, take the attempt's budget slot, and
        refuse to send a code whose slot came after ``send_by``."""
        if last is not None:
            await self._back_off(attempt - 1, last)
        if attempt > 0 or not slot_taken:
            await self.take_slot()
        if send_by is not None and time.time() > send_by:
            raise errors.CodeExpired("the authorization code expired before it could be exchanged")

    async def take_slot(self) -> None:
        """Wait for a slot of the app's budget (a 429 cool-down included) and take it."""
        metrics.BUDGET_WAIT.labels(self.app, self.priority).observe(await self._budget.acquire())
        metrics.BUDGET_RATE.labels(self.app).set(self._budget.current_rate)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        data: Mapping[str, str] | None,
        auth: httpx.BasicAuth | None,
    ) -> Answer:
        kind = endpoint_kind(url)
        try:
            request = self.http.build_request(method, url, headers=headers, data=data)
            response = await self.http.send(
                request, auth=auth or httpx.USE_CLIENT_DEFAULT, stream=True
            )
            try:
                content = await _read_limited(response)
            finally:
                await response.aclose()
        except errors.ProtocolError:
            metrics.BB2_REQUESTS.labels(self.app, kind, "oversize").inc()
            raise
        except httpx.TransportError as exc:
            metrics.BB2_REQUESTS.labels(self.app, kind, "error").inc()
            what = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
            raise errors.TransportError(
                f"BB2 {what} ({type(exc).__name__})",
                maybe_delivered=not isinstance(exc, _NEVER_SENT),
            ) from exc
        metrics.BB2_REQUESTS.labels(self.app, kind, str(response.status_code)).inc()
        return Answer(response.status_code, response.headers, content)

    def _transient(self, response: Answer) -> errors.RetryableError:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        status = response.status_code
        if status == 429:
            return errors.RateLimited("BB2 answered 429", status=status, retry_after=retry_after)
        return errors.ServerError(f"BB2 answered {status}", status=status, retry_after=retry_after)

    async def _back_off(self, attempt: int, error: errors.RetryableError) -> None:
        metrics.BB2_RETRIES.labels(self.app, _retry_reason(error)).inc()
        delay = self._policy.backoff(attempt, self._rand)
        if isinstance(error, errors.RateLimited):
            # The app's shared rate comes down (AIMD, see aimd.py); a Retry-After besides
            # stops every replica, not just this coroutine, once per signal. A bare 429 (an
            # edge may send them, FACTS.md) pauses nobody: the lower rate spaces the retry.
            await self._budget.slow_down(error.retry_after)
            log.warning("bb2_rate_limited", retry_after=error.retry_after, attempt=attempt)
            return
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        log.info("bb2_transient_failure", error=str(error), attempt=attempt, delay=round(delay, 3))
        await self._sleep(delay)


def _retry_reason(error: errors.RetryableError) -> str:
    if isinstance(error, errors.RateLimited):
        return "rate_limited"
    return "server_error" if isinstance(error, errors.ServerError) else "transport"
