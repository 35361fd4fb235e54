"""A connection's access token for the fetcher: refreshed ahead of expiry and after a 401.

Refreshes of one connection are serialised across replicas by a row lock, so that two jobs
never spend the same rolling refresh token: the second one finds a new token already
stored and uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from worker.apps import App
from worker.bluebutton import oauth
from worker.bluebutton.client import BlueButtonClient
from worker.jobs.services import Services
from worker.store import audit, connections
from worker.store.connections import Tokens


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ConnectionTokens:
    """Implements :class:`worker.bluebutton.fhir.AccessTokens` for one connection, refreshing
    with the credentials of the app that issued its tokens, through ``bluebutton``."""

    def __init__(
        self,
        services: Services,
        connection_id: str,
        app: App,
        bluebutton: BlueButtonClient,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._services = services
        self._connection_id = connection_id
        self._app = app
        self._bluebutton = bluebutton
        self._now = now
        self._margin = timedelta(seconds=services.settings.bb_refresh_margin)
        self._cached: Tokens | None = None
        self.refreshes = 0

    def _fresh(self, tokens: Tokens) -> bool:
        return tokens.access_expires_at - self._margin > self._now()

    async def current(self) -> str:
        """A valid access token, refreshing first when it is about to expire."""
        if self._cached is None:
            async with self._services.pool.acquire() as conn:
                self._cached = await connections.load_tokens(
                    conn, self._services.cipher, self._connection_id
                )
        if self._fresh(self._cached):
            return self._cached.access_token
        return await self.refreshed(self._cached.access_token)

    async def refreshed(self, stale: str) -> str:
        """A new access token to replace ``stale``, which BB2 refused or is expiring."""
        services = self._services
        async with services.pool.acquire() as conn, conn.transaction():
            stored = await connections.load_tokens(
                conn, services.cipher, self._connection_id, for_update=True
            )
            if stored.access_token != stale and self._fresh(stored):
                self._cached = stored  # another job refreshed while we waited for the lock
                return stored.access_token
            granted = await oauth.refresh(
                self._bluebutton, self._app.credentials, stored.refresh_token
            )
            new = Tokens(granted.access_token, granted.refresh_token, granted.expires_at)
            await connections.save_tokens(conn, services.cipher, self._connection_id, new)
            await audit.record(conn, self._connection_id, "tokens_refreshed")
        self._cached = new
        self.refreshes += 1
        return new.access_token
