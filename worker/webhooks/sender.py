"""One webhook POST: sign the event's envelope with the endpoint's valid secrets, send it,
and say what came of it. A 2xx within the timeout is success; anything else is a failure
the dispatcher retries (a lost 2xx makes a duplicate with the same event id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import httpx

from worker.crypto import TokenCipher
from worker.errors import DecryptionError, KeyMissing
from worker.events.envelope import envelope_bytes
from worker.metrics import DECRYPT_KEY_MISSING
from worker.store.outbox import Event
from worker.store.webhooks import SealedSecrets
from worker.webhooks.signing import headers_for

TIMEOUT_SECONDS: Final = 10.0
USER_AGENT: Final = "bbingest-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the receiver's status (None: no answer) and why it failed."""

    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        """The receiver took it (2xx)."""
        return self.error is None


def client(connections: int) -> httpx.AsyncClient:
    """The HTTP client of webhook deliveries, apart from BB2's: a slow receiver holds its
    own sockets, never a BB2 one. Redirects are not followed (the URL was checked)."""
    return httpx.AsyncClient(
        timeout=TIMEOUT_SECONDS,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"User-Agent": USER_AGENT},
    )


def _secrets(cipher: TokenCipher, sealed: SealedSecrets, now: datetime) -> list[str] | Outcome:
    try:
        return sealed.valid(cipher, now)
    except KeyMissing as exc:
        DECRYPT_KEY_MISSING.labels(key_id=exc.key_id).inc()
        return Outcome(None, f"the endpoint's secret cannot be decrypted: {exc}")
    except DecryptionError as exc:
        return Outcome(None, f"the endpoint's secret cannot be decrypted: {exc}")


async def post(
    http: httpx.AsyncClient, url: str, event_id: str, body: bytes, secrets: list[str], now: datetime
) -> Outcome:
    """POST a signed ``body`` to ``url``; the outcome, never an exception of the transport."""
    headers = headers_for(event_id, body, secrets, int(now.timestamp()))
    try:
        response = await http.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        return Outcome(None, f"no answer within {TIMEOUT_SECONDS:g} s")
    except httpx.HTTPError as exc:
        return Outcome(None, f"transport: {type(exc).__name__}")
    if 200 <= response.status_code < 300:
        return Outcome(response.status_code, None)
    return Outcome(response.status_code, f"HTTP {response.status_code}")


async def deliver(
    http: httpx.AsyncClient, cipher: TokenCipher, sealed: SealedSecrets, event: Event, now: datetime
) -> Outcome:
    """Send ``event``'s envelope to the endpoint of ``sealed``, signed as of ``now`` with its
    valid secrets; a secret that cannot be decrypted fails this attempt only."""
    secrets = _secrets(cipher, sealed, now)
    if isinstance(secrets, Outcome):
        return secrets
    return await post(http, sealed.url, str(event.event_id), envelope_bytes(event), secrets, now)
