"""HMAC-SHA256 request signatures of the intake API, versions 2 and 1.

Version 2 (``X-Bbingest-Signature: v2=<hex>``): the caller names its key in
``X-Bbingest-Key``, sends a fresh random ``X-Bbingest-Nonce`` and the unix time in
``X-Bbingest-Timestamp``, and signs these newline-joined lines (:func:`canonical_v2`)::

    bbingest-v2
    <key name>
    <METHOD>
    <path as sent, percent-encoded, no query>
    <timestamp>
    <nonce>
    <sha256 hex of the raw body>

No field can hold a newline (each is checked), so no two requests share a message; the body
enters as its digest, so it cannot trade bytes with the path. The intake accepts a nonce once
(worker/intake/nonces.py), so even a GET cannot be replayed within the clock window.

Version 1 (``sha256=<hex>`` over ``f"{timestamp}.{METHOD}.{path}.".encode() + body``, no key
name, no nonce) is ambiguous and replayable within ``INTAKE_MAX_SKEW``; it is accepted until
``INTAKE_V1_UNTIL`` (README, "Intake signatures") and tried against every caller's key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final

from worker.intake.callers import Caller

TIMESTAMP_HEADER: Final = "X-Bbingest-Timestamp"
SIGNATURE_HEADER: Final = "X-Bbingest-Signature"
KEY_HEADER: Final = "X-Bbingest-Key"
NONCE_HEADER: Final = "X-Bbingest-Nonce"
SIGNATURE_PREFIX: Final = "sha256="
V2_PREFIX: Final = "v2="
V2_LABEL: Final = "bbingest-v2"
# Twelve digits reach the year 33658: anything longer is not a timestamp, and is not parsed.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
_SIGNATURE_V2 = re.compile(r"v2=[0-9a-f]{64}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class Unauthorized(Exception):
    """A request without a valid signature; the message says only "missing" or "invalid"
    (or that version 1 has passed its cut-off)."""


@dataclass(frozen=True)
class Verified:
    """Who signed a request, and the nonce to accept once (None for version 1)."""

    caller: Caller
    nonce: str | None


# ------------------------------------------------------------------------------ version 2


def canonical_v2(
    key_name: str, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    """The bytes a version 2 signature covers; Unauthorized if a field holds a newline."""
    fields = (V2_LABEL, key_name, method.upper(), path, timestamp, nonce)
    if any("\n" in item or "\r" in item for item in fields):
        raise Unauthorized("invalid signature")
    return "\n".join((*fields, hashlib.sha256(body).hexdigest())).encode()


def signature_v2(
    caller: Caller, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """The ``v2=<hex>`` value of the signature header."""
    message = canonical_v2(caller.name, method, path, timestamp, nonce, body)
    return V2_PREFIX + hmac.new(caller.key, message, hashlib.sha256).hexdigest()


def sign_v2(
    caller: Caller,
    method: str,
    path: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that authenticate a request with version 2 (a fresh nonce by default)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    once = secrets.token_urlsafe(24) if nonce is None else nonce
    return {
        KEY_HEADER: caller.name,
        TIMESTAMP_HEADER: stamp,
        NONCE_HEADER: once,
        SIGNATURE_HEADER: signature_v2(caller, method, path, stamp, once, body),
    }


# ------------------------------------------------------------------------------ version 1


def signed_message(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    """The bytes a version 1 signature covers: timestamp, method, path and the raw body."""
    return f"{timestamp}.{method.upper()}.{path}.".encode() + body


def signature(key: bytes, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The ``sha256=<hex>`` value of a version 1 signature header."""
    digest = hmac.new(key, signed_message(timestamp, method, path, body), hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def sign(
    key: bytes, method: str, path: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of a version 1 signature (``timestamp`` defaults to now)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: signature(key, stamp, method, path, body),
    }


# ------------------------------------------------------------------------------ checking


@dataclass(frozen=True)
class Policy:
    """How signatures are checked: the callers, the clock window, the v1 cut-off day."""

    callers: Sequence[Caller]
    max_skew: int
    v1_until: date


def verify(
    policy: Policy,
    headers: Mapping[str, str],
    request: tuple[str, str, bytes],
    *,
    now: float | None = None,
) -> Verified:
    """Who signed ``request`` (method, path, body) with ``headers``; Unauthorized unless a
    caller's key signed it at a time within ``max_skew`` seconds of ``now``."""
    stamp = headers.get(TIMESTAMP_HEADER)
    given = (headers.get(SIGNATURE_HEADER) or "").lower()
    if not stamp or not given:
        raise Unauthorized("missing signature")
    current = time.time() if now is None else now
    # One answer for every other failure: a caller probing the scheme learns nothing.
    if not _TIMESTAMP.fullmatch(stamp):
        raise Unauthorized("invalid signature")
    if given.startswith(V2_PREFIX):
        verified = _verify_v2(policy.callers, headers, stamp, given, request)
    else:
        verified = _verify_v1(policy, stamp, given, request, current)
    # The clock is checked after the signature, so that both failures take the same time.
    if verified is None or abs(current - int(stamp)) > policy.max_skew:
        raise Unauthorized("invalid signature")
    return verified


def _verify_v2(
    callers: Sequence[Caller],
    headers: Mapping[str, str],
    stamp: str,
    given: str,
    request: tuple[str, str, bytes],
) -> Verified | None:
    name = headers.get(KEY_HEADER, "")
    nonce = headers.get(NONCE_HEADER, "")
    caller = next((c for c in callers if c.name == name), None)
    if caller is None or not _NONCE.fullmatch(nonce) or not _SIGNATURE_V2.fullmatch(given):
        return None
    method, path, body = request
    expected = signature_v2(caller, method, path, stamp, nonce, body)
    return Verified(caller, nonce) if hmac.compare_digest(expected, given) else None


def _verify_v1(
    policy: Policy, stamp: str, given: str, request: tuple[str, str, bytes], now: float
) -> Verified | None:
    if datetime.fromtimestamp(now, UTC).date() >= policy.v1_until:
        raise Unauthorized("signature v1 is no longer accepted: sign with v2")
    if not _SIGNATURE.fullmatch(given):
        return None
    method, path, body = request
    found = None
    # Every key is tried (no early exit): the time taken does not say which one matched.
    for caller in policy.callers:
        expected = signature(caller.key, stamp, method, path, body)
        if hmac.compare_digest(expected, given):
            found = Verified(caller, None)
    return found
