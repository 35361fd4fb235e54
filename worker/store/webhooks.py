"""Webhook endpoints (issue 15): where an app's events are POSTed, with sealed secrets.

A secret is sealed by worker.crypto bound to its endpoint's app and URL, so a secret copied
onto another endpoint does not decrypt. During a rotation the previous secret stays valid
(deliveries are signed with both) until ``previous_until``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker.crypto import TokenCipher
from worker.store.db import Conn


def secret_context(app: str, url: str, column: str) -> str:
    """The associated data a secret of endpoint (``app``, ``url``) is sealed with."""
    return f"webhook/{app}/{url}/{column}"


@dataclass(frozen=True)
class SealedSecrets:
    """An endpoint's secrets as stored: decrypted only when a delivery is signed."""

    app: str
    url: str
    secret_enc: str
    previous_secret_enc: str | None
    previous_until: datetime | None

    def valid(self, cipher: TokenCipher, now: datetime) -> list[str]:
        """The secrets to sign with at ``now``: the current one, and the previous one
        while its grace period runs. Raises DecryptionError when one cannot be read."""
        secrets = [cipher.decrypt(self.secret_enc, context=self._context("secret_enc"))]
        if self.previous_secret_enc and self.previous_until and self.previous_until > now:
            context = self._context("previous_secret_enc")
            secrets.append(cipher.decrypt(self.previous_secret_enc, context=context))
        return secrets

    def _context(self, column: str) -> str:
        return secret_context(self.app, self.url, column)


@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint as ``bbingest webhooks list`` shows it (never its secrets)."""

    endpoint_id: int
    app: str
    url: str
    rotating_until: datetime | None
    pending: int
    dead: int
    created_at: datetime


async def add(conn: Conn, cipher: TokenCipher, app: str, url: str, secret: str) -> int:
    """Register ``url`` for ``app``'s events; its id. UniqueViolationError if it exists."""
    sealed = cipher.encrypt(secret, context=secret_context(app, url, "secret_enc"))
    endpoint_id: int = await conn.fetchval(
        """INSERT INTO webhook_endpoints (app, url, secret_enc) VALUES ($1, $2, $3)
           RETURNING endpoint_id""",
        app,
        url,
        sealed,
    )
    return endpoint_id


async def remove(conn: Conn, app: str, url: str) -> bool:
    """Forget an endpoint and its deliveries; False when there was none."""
    status = await conn.execute(
        "DELETE FROM webhook_endpoints WHERE app = $1 AND url = $2", app, url
    )
    return status != "DELETE 0"


async def rotate(
    conn: Conn, cipher: TokenCipher, app: str, url: str, secret: str, grace_until: datetime
) -> bool:
    """Make ``secret`` the endpoint's current secret; the current one stays valid until
    ``grace_until``. False when there is no such endpoint."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT secret_enc FROM webhook_endpoints WHERE app = $1 AND url = $2 FOR UPDATE",
            app,
            url,
        )
        if row is None:
            return False
        old = cipher.decrypt(row["secret_enc"], context=secret_context(app, url, "secret_enc"))
        await conn.execute(
            """UPDATE webhook_endpoints
               SET secret_enc = $3, previous_secret_enc = $4, previous_until = $5
               WHERE app = $1 AND url = $2""",
            app,
            url,
            cipher.encrypt(secret, context=secret_context(app, url, "secret_enc")),
            cipher.encrypt(old, context=secret_context(app, url, "previous_secret_enc")),
            grace_until,
        )
    return True


async def sealed_secrets(conn: Conn, app: str) -> list[SealedSecrets]:
    """Every endpoint of ``app`` with its sealed secrets (``bbingest webhooks test``)."""
    rows = await conn.fetch(
        """SELECT app, url, secret_enc, previous_secret_enc, previous_until
           FROM webhook_endpoints WHERE app = $1 ORDER BY endpoint_id""",
        app,
    )
    return [SealedSecrets(**dict(row)) for row in rows]


async def list_all(conn: Conn, app: str | None = None) -> list[EndpointInfo]:
    """Every endpoint (of ``app``), with how many deliveries wait and were dead-lettered."""
    rows = await conn.fetch(
        """SELECT e.endpoint_id, e.app, e.url, e.created_at,
                  CASE WHEN e.previous_until > now() THEN e.previous_until END AS rotating_until,
                  count(*) FILTER (WHERE d.delivered_at IS NULL AND d.dead_at IS NULL
                                   AND d.delivery_id IS NOT NULL) AS pending,
                  count(d.dead_at) AS dead
           FROM webhook_endpoints e LEFT JOIN webhook_deliveries d USING (endpoint_id)
           WHERE $1::text IS NULL OR e.app = $1
           GROUP BY e.endpoint_id ORDER BY e.app, e.url""",
        app,
    )
    return [EndpointInfo(**dict(row)) for row in rows]


async def rekey_all(conn: Conn, cipher: TokenCipher) -> int:
    """Re-encrypt every endpoint secret under the active key; how many values changed."""
    changed = 0
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT endpoint_id, app, url, secret_enc, previous_secret_enc"
            " FROM webhook_endpoints FOR UPDATE"
        )
        for row in rows:
            for column in ("secret_enc", "previous_secret_enc"):
                context = secret_context(row["app"], row["url"], column)
                sealed = cipher.reseal(row[column], context=context)
                if sealed is None:
                    continue
                await conn.execute(
                    f"UPDATE webhook_endpoints SET {column} = $2 WHERE endpoint_id = $1",
                    row["endpoint_id"],
                    sealed,
                )
                changed += 1
    return changed
