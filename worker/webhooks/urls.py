"""Which URLs can receive webhooks: HTTPS, or plain HTTP to a loopback host (a receiver on
the same machine, as in tests and the demo). Events leave the cluster signed but otherwise
in the clear over plain HTTP, so nothing else is accepted."""

from __future__ import annotations

from urllib.parse import urlsplit

from worker.settings import is_loopback_host

MAX_URL_LENGTH = 2000


def check_webhook_url(url: str) -> str:
    """``url`` when it can receive webhooks; a ValueError saying why not otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url[:80]!r}")
    if parts.username or parts.password:
        raise ValueError("the URL must not carry a user or password (the signature authenticates)")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            "webhooks are sent over https only; plain http:// is accepted for loopback hosts"
            " (127.0.0.1, ::1, localhost) alone"
        )
    return url
