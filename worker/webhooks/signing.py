"""Webhook signatures (issue 15): what a delivery carries and how a receiver checks it.

A delivery has two headers:

* ``BBIngest-Event-Id: <event id>`` -- the same on every redelivery: receivers dedupe by it.
* ``BBIngest-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` -- one
  ``v1=`` per secret valid now (two while a secret is being rotated).

:func:`verify` is written to be copied by receivers: it needs only the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

EVENT_ID_HEADER: Final = "BBIngest-Event-Id"
SIGNATURE_HEADER: Final = "BBIngest-Signature"
TOLERANCE_SECONDS: Final = 300


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The ``BBIngest-Signature`` value: the timestamp and one ``v1=`` per valid secret."""
    if not secrets:
        raise ValueError("a delivery needs at least one secret to sign with")
    return ",".join([f"t={timestamp}", *(f"v1={signature(body, s, timestamp)}" for s in secrets)])


def headers_for(
    event_id: str, body: bytes, secrets: Sequence[str], timestamp: int
) -> dict[str, str]:
    """Every header of a signed delivery."""
    return {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event_id,
        SIGNATURE_HEADER: signature_header(body, secrets, timestamp),
    }


def verify(
    body: bytes, header: str, secret: str, now: float, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """True when ``header`` (a ``BBIngest-Signature`` value) signs ``body`` with ``secret``
    and its timestamp is within ``tolerance`` seconds of ``now``: an altered body, another
    secret or a delivery replayed outside the window fails."""
    fields = [part.strip().partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in fields if key == "t"]
    # ASCII digits only: "²" passes isdigit() but makes int() raise on a hostile header.
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()):
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(body, secret, timestamp)
    return any(key == "v1" and hmac.compare_digest(value, expected) for key, _, value in fields)
