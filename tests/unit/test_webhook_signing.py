"""Webhook signatures: what receivers check, and the check itself (worker.webhooks.signing)."""

import hashlib
import hmac
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.webhooks.signing import headers_for, signature, signature_header, verify

BODY = b'{"id":"e1","type":"connection.active"}'
T = 1_800_000_000


def test_a_signed_delivery_verifies() -> None:
    header = signature_header(BODY, ["s3cret"], T)
    assert header.startswith(f"t={T},v1=")
    assert verify(BODY, header, "s3cret", now=T + 10)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"s3cret", f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(BODY, "s3cret", T) == expected


def test_openssl_computes_the_same_signature_as_the_readme_shows() -> None:
    message = f"{T}.".encode() + BODY
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", "s3cret"],
        input=message,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert out.strip().rsplit(" ", 1)[-1] == signature(BODY, "s3cret", T)


def test_an_altered_body_fails() -> None:
    header = signature_header(BODY, ["s3cret"], T)
    assert not verify(BODY.replace(b"active", b"revoked"), header, "s3cret", now=T)


def test_another_secret_fails() -> None:
    assert not verify(BODY, signature_header(BODY, ["s3cret"], T), "other", now=T)


def test_a_delivery_replayed_outside_the_window_fails() -> None:
    header = signature_header(BODY, ["s3cret"], T)
    assert verify(BODY, header, "s3cret", now=T + 300)
    assert not verify(BODY, header, "s3cret", now=T + 301)
    assert not verify(BODY, header, "s3cret", now=T - 301)


def test_a_header_with_a_moved_timestamp_fails() -> None:
    header = signature_header(BODY, ["s3cret"], T).replace(f"t={T}", f"t={T + 600}")
    assert not verify(BODY, header, "s3cret", now=T + 600)


def test_malformed_headers_fail() -> None:
    for header in ("", "v1=abc", f"t={T}", "t=x,v1=abc", "t=\u00b2,v1=abc", f"t={T},t={T},v1=abc"):
        assert not verify(BODY, header, "s3cret", now=T)


def test_during_a_rotation_either_secret_verifies() -> None:
    header = signature_header(BODY, ["new", "old"], T)
    assert header.count("v1=") == 2
    assert verify(BODY, header, "new", now=T)
    assert verify(BODY, header, "old", now=T)
    assert not verify(BODY, header, "neither", now=T)


def test_headers_name_the_event_for_dedupe() -> None:
    headers = headers_for("e1", BODY, ["s3cret"], T)
    assert headers["BBIngest-Event-Id"] == "e1"
    assert verify(BODY, headers["BBIngest-Signature"], "s3cret", now=T)


def _readme_check() -> Callable[..., bool]:
    """The receiver's check exactly as README's Webhooks section prints it."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("**Checking a delivery**") :]
    code = section[section.index("```python\n") + 10 : section.index("```\n", 10)]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    check: Callable[..., bool] = namespace["verify"]
    return check


def test_the_readme_check_accepts_a_delivery_and_refuses_altered_or_old_ones() -> None:
    check = _readme_check()
    now = int(time.time())
    header = signature_header(BODY, ["new", "old"], now)
    assert check(BODY, header, "old")
    assert not check(BODY + b" ", header, "old")
    assert not check(BODY, signature_header(BODY, ["old"], now - 301), "old")
    assert not check(BODY, "t=\u00b2,v1=abc", "old")
