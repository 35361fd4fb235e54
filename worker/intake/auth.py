"""HMAC-SHA256 request signatures of the intake API.

A client signs ``f"{timestamp}.{METHOD}.{path}.".encode() + raw_body`` with ``INTAKE_SECRET``
and sends the timestamp (unix seconds) and ``sha256=<hex>`` in two headers. The timestamp bounds
replays to ``INTAKE_MAX_SKEW`` seconds; within that window the event id makes a replayed event
a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Final

TIMESTAMP_HEADER: Final = "X-Bbingest-Timestamp"
SIGNATURE_HEADER: Final = "X-Bbingest-Signature"
SIGNATURE_PREFIX: Final = "sha256="
# Twelve digits reach the year 33658: anything longer is not a timestamp, and is not parsed.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


class Unauthorized(Exception):
    """A request without a valid signature; the message says only "missing" or "invalid"."""


def signed_message(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    """The bytes a signature covers: timestamp, method, path and the raw body."""
    return f"{timestamp}.{method.upper()}.{path}.".encode() + body


def signature(key: bytes, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The ``sha256=<hex>`` value of the signature header."""
    digest = hmac.new(key, signed_message(timestamp, method, path, body), hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def sign(
    key: bytes, method: str, path: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The headers that authenticate a request (``timestamp`` defaults to now)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: signature(key, stamp, method, path, body),
    }


def verify(
    key: bytes,
    headers: Mapping[str, str],
    request: tuple[str, str, bytes],
    *,
    max_skew: int,
    now: float | None = None,
) -> None:
    """Raise :class:`Unauthorized` unless ``headers`` sign ``request`` (method, path, body)
    with ``key`` at a time within ``max_skew`` seconds of ``now``."""
    stamp = headers.get(TIMESTAMP_HEADER)
    given = headers.get(SIGNATURE_HEADER)
    if not stamp or not given:
        raise Unauthorized("missing signature")
    # One answer for every other failure: a caller probing the scheme learns nothing.
    if not _TIMESTAMP.fullmatch(stamp) or not _SIGNATURE.fullmatch(given.lower()):
        raise Unauthorized("invalid signature")
    method, path, body = request
    expected = signature(key, stamp, method, path, body)
    # Compare before the clock check so both failures take the same time.
    matches = hmac.compare_digest(expected.encode(), given.lower().encode())
    current = time.time() if now is None else now
    if not matches or abs(current - int(stamp)) > max_skew:
        raise Unauthorized("invalid signature")
