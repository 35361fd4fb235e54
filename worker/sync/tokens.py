"""A connection's access token for the fetcher: refreshed ahead of expiry and after a 401.

No Postgres connection or lock is held across a request to CMS or its budget wait (a 429
cool-down lasts up to minutes). A refresh:

1. reads the stored tokens (a short read, no lock) and uses them when another job has
   already replaced the token it holds;
2. waits while another job holds the connection's refresh lock and reads again: twenty jobs
   finding an expired token cause one refresh;
3. takes its budget slot, holding nothing while it waits;
4. takes the connection's refresh lock (:mod:`worker.sync.refresh_lock`: Redis, renewed
   while held, fenced), reads again, and spends the refresh token only while its fence still
   holds the lock (a holder whose lock lapsed goes round again instead);
5. stores the new tokens with a compare-and-swap on ``connections.token_generation``
   (ciphertexts cannot be compared: each encryption draws a new nonce).

Why no refreshed tokens are lost. BB2 rotates the refresh token on every refresh and
answers a second use of it with 400 ``invalid_grant`` (FACTS.md, Authorization): of two
jobs that spend the same refresh token, only the first gets tokens. So when the swap fails,
the generation was moved by an unlink or a new grant, not by another refresh (that one would
have spent our refresh token first and we would have got no tokens); our tokens are then
owed a revocation (:func:`worker.store.tokens.save_refreshed`). Conversely, a refresh
that CMS refuses reads the row again: when its generation moved, another refresher (one
whose lock had lapsed) or a new grant won, and those tokens are used, not a re-consent
declared. One case stays: a holder that stalls past its lock's lifetime *after* its fence
check, and whose refresh CMS then answers first, leaves the next holder a refused token
and an unchanged generation; that holder reports a re-consent as before, and the first one
still stores its tokens (nothing is lost). The lock's renewal makes such a stall a frozen
process or an unreachable Redis, for ``REFRESH_LOCK_SECONDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

from worker import errors
from worker.apps import App
from worker.bluebutton import oauth
from worker.bluebutton.client import BlueButtonClient
from worker.runtime.services import Services
from worker.store import audit
from worker.store import tokens as token_store
from worker.store.tokens import Tokens
from worker.sync.refresh_lock import Held, RefreshLock

log = structlog.get_logger(__name__)

# Times a refresh goes round again after finding its lock lapsed before it gives up (and
# the job is retried soon, as for a Redis outage).
_LAPSES_TOLERATED: Final = 3


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
        lock: RefreshLock | None = None,
    ) -> None:
        self._services = services
        self._connection_id = connection_id
        self._app = app
        self._bluebutton = bluebutton
        self._now = now
        self._margin = timedelta(seconds=services.settings.bb_refresh_margin)
        self._lock = lock or RefreshLock(services.redis, connection_id)
        self._cached: Tokens | None = None
        self.refreshes = 0

    def _fresh(self, tokens: Tokens) -> bool:
        return tokens.access_expires_at - self._margin > self._now()

    def _replaces(self, stored: Tokens, stale: str) -> bool:
        return stored.access_token != stale and self._fresh(stored)

    def _use(self, tokens: Tokens) -> str:
        self._cached = tokens
        return tokens.access_token

    async def _load(self) -> Tokens:
        async with self._services.pool.acquire() as conn:
            return await token_store.load_tokens(conn, self._services.cipher, self._connection_id)

    async def current(self) -> str:
        """A valid access token, refreshing first when it is about to expire."""
        if self._cached is None:
            self._cached = await self._load()
        if self._fresh(self._cached):
            return self._cached.access_token
        return await self.refreshed(self._cached.access_token)

    async def refreshed(self, stale: str) -> str:
        """A new access token to replace ``stale``, which BB2 refused or is expiring."""
        for _ in range(_LAPSES_TOLERATED):
            await self._lock.wait_free()
            stored = await self._load()
            if self._replaces(stored, stale):
                return self._use(stored)
            await self._bluebutton.take_slot()
            async with self._lock.hold() as held:
                stored = await self._load()
                if self._replaces(stored, stale):
                    return self._use(stored)  # the slot goes unused: another job was quicker
                if await held.still_held():
                    return await self._spend(stored, held)
            log.warning("refresh_lock_lapsed")
        raise errors.RedisUnavailable("the refresh lock kept lapsing before the refresh")

    async def _spend(self, stored: Tokens, held: Held) -> str:
        try:
            granted = await oauth.refresh(
                self._bluebutton, self._app.credentials, stored.refresh_token, slot_taken=True
            )
        except errors.ReconsentRequired:
            now_stored = await self._load()
            if now_stored.generation != stored.generation:
                log.warning("refresh_lost_to_another", fenced=held.lost)
                return self._use(now_stored)
            raise
        new = Tokens.issued(granted, stored.generation)
        if not await self._store(new):
            log.warning("refreshed_tokens_owed_revocation")
            return self._use(await self._load())  # ConnectionRevoked when it was unlinked
        self.refreshes += 1
        return self._use(replace(new, generation=stored.generation + 1))

    async def _store(self, new: Tokens) -> bool:
        services = self._services
        async with services.pool.acquire() as conn, conn.transaction():
            stored = await token_store.save_refreshed(
                conn,
                services.cipher,
                self._connection_id,
                new,
                app=self._app.name,
                client_id=self._app.client_id,
            )
            if stored:
                await audit.record(conn, self._connection_id, "tokens_refreshed")
        return stored
