"""Settling what CMS is owed after an unlink or a relink: the one place that revokes.

What each owed row needs (FACTS.md, Revocation; apps/dot_ext/views/authorization.py):

- End the grant (an unlink): ``/v2/o/revoke/`` with a live ACCESS token of it: the only
  call that deletes the grant, and with it every token. BB2's own (JSON) 500 means CMS
  cannot find the token as an access token (rotated away, or revoked by our earlier try
  whose answer was lost; an edge's 500 says nothing, and the try is repeated): refresh
  (the new tokens are stored in the row before use) and try with the fresh one. A
  refresh saying the grant is gone (403/401 ``invalid_grant``, 400 ``invalid_request``)
  settles it: the grant already ended.
- When no access token can be had at all (a spent refresh token, a one-time app, CMS
  failing mid-refresh), or CMS keeps failing (MAX_GRANT_REFUSALS): revoke the refresh
  token at ``/v2/o/revoke_token/`` with ``token_type_hint=refresh_token`` and record that
  the grant could not be ended.
- One grant per (beneficiary, app): when another live connection shares the client and
  patient, or the row is a relink's old tokens, revoke only the tokens
  (``/v2/o/revoke_token/``, each with its hint) and leave the grant. Checked at every try.
- An inactive app answers 403: the row stays owed and is not counted as a failure.

Every settled row leaves an audit row ``revoked_at_cms`` saying whether CMS confirmed the
grant ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from worker import errors, pauses
from worker.apps import App
from worker.bluebutton import oauth
from worker.bluebutton.client import BlueButtonClient
from worker.constants import MAX_GRANT_REFUSALS
from worker.errors import Decision
from worker.events.emit import emit
from worker.runtime.failures import Handler, on_failure
from worker.runtime.services import Services
from worker.store import audit, revocations
from worker.store.revocations import Owed
from worker.sync.refresh_lock import RefreshLock

log = structlog.get_logger(__name__)

KEPT = "revocation failed; tokens kept in pending_revocations"
WAITING = "app inactive at CMS; revocation owed until it is active again"


@dataclass(frozen=True)
class Settled:
    """How CMS settled an owed revocation."""

    grant_ended: bool
    how: str


def not_found_as_access(error: errors.ServerError) -> bool:
    """Whether ``/v2/o/revoke/`` said it found no such access token: BB2's own 500, the JSON
    of its handler500 (rest_framework.exceptions.server_error, hhs_oauth_server/urls.py)
    for RevokeView's uncaught InvalidRequestError (apps/dot_ext/utils.py,
    get_application_from_data). A 500 without it came from an edge or gateway and says
    nothing about the token (FACTS.md, Errors): the try is repeated, no refresh token is
    spent and no refusal counted, else an edge's outage would end in a grant never ended."""
    return error.status == 500 and not isinstance(error, errors.EdgeError)


async def _revoke_tokens(
    client: BlueButtonClient, app: App, owed: Owed, access: str | None
) -> None:
    if access is not None:
        await oauth.revoke_token(client, app.credentials, access, "access_token")
    await oauth.revoke_token(client, app.credentials, owed.refresh_token, "refresh_token")


async def _refresh_then_end(
    services: Services, client: BlueButtonClient, app: App, owed: Owed
) -> Settled:
    try:
        fresh = await oauth.refresh(client, app.credentials, owed.refresh_token)
    except errors.ReconsentRequired as exc:
        if exc.grant_ended:
            return Settled(True, f"grant already ended at CMS ({exc.status})")
        # No access token can be had: at least the refresh token dies.
        await oauth.revoke_token(client, app.credentials, owed.refresh_token, "refresh_token")
        return Settled(False, f"grant could not be ended, refresh token revoked: {exc}")
    # The old refresh token is spent: keep the new ones before using them.
    async with services.pool.acquire() as conn:
        await revocations.keep_tokens(
            conn, services.cipher, owed, fresh.access_token, fresh.refresh_token
        )
    try:
        await oauth.end_grant(client, app.credentials, fresh.access_token)
    except errors.ServerError as exc:
        if not_found_as_access(exc):  # a token CMS minted a moment ago: a real failure
            async with services.pool.acquire() as conn:
                await revocations.grant_refused(conn, owed.revocation_id)
        raise
    return Settled(True, "grant ended at CMS after a refresh")


async def _settle(services: Services, owed: Owed) -> Settled:
    app = await services.app(owed.app, owed.client_id)
    client = await services.bluebutton(app)
    if not owed.end_grant:
        await _revoke_tokens(client, app, owed, owed.access_token)
        return Settled(False, "tokens revoked, grant kept: a relink's old tokens")
    async with services.pool.acquire() as conn:
        shared = await revocations.shares_grant(conn, owed.revocation_id)
    if shared:
        await _revoke_tokens(client, app, owed, owed.access_token)
        return Settled(False, "tokens revoked, grant kept: a live connection shares the grant")
    if owed.grant_refusals >= MAX_GRANT_REFUSALS:
        await _revoke_tokens(client, app, owed, owed.access_token)
        return Settled(False, f"grant could not be ended: CMS failed {owed.grant_refusals} times")
    if owed.access_token is not None:
        try:
            await oauth.end_grant(client, app.credentials, owed.access_token)
        except errors.ServerError as exc:
            if not not_found_as_access(exc):
                raise
            # Not found as an access token: rotated away, or already revoked by us.
        else:
            return Settled(True, "grant ended at CMS")
    return await _refresh_then_end(services, client, app, owed)


async def _record(services: Services, owed: Owed, settled: Settled) -> None:
    async with services.pool.acquire() as conn, conn.transaction():
        await revocations.settled(conn, owed.revocation_id)
        await audit.record(
            conn,
            owed.connection_id,
            "revoked_at_cms",
            grant_ended=settled.grant_ended,
            how=settled.how,
        )
        if settled.grant_ended:
            await emit(
                conn,
                "connection.grant_ended",
                app=owed.app,
                connection_id=owed.connection_id,
                ended_at=datetime.now(UTC),
            )
    log.info("revocation_settled", grant_ended=settled.grant_ended, how=settled.how)


def _owed_failures(services: Services, owed: Owed) -> dict[Decision, Handler[str]]:
    """What settling an owed row does per decision (worker.errors draws the tree)."""

    async def wait_for_app(_: errors.IngestError) -> str:
        await pauses.mark_paused(services.redis, services.pool, owed.app)
        log.warning("revocation_waits_for_app", app=owed.app)
        return WAITING

    async def failed(exc: errors.IngestError) -> str:
        async with services.pool.acquire() as conn:
            await revocations.failed(conn, owed.revocation_id, str(exc))
        log.warning("revocation_failed", reason=str(exc))
        return KEPT

    async def failed_for_now(exc: errors.IngestError) -> str:
        await failed(exc)
        raise exc  # recorded; the job comes back later

    return {
        Decision.APP_PAUSED: wait_for_app,
        Decision.RETRY_LATER: failed_for_now,
        Decision.REFRESH: failed,
        Decision.RECONSENT: failed,
        Decision.RESTART_TYPE: failed,
        Decision.CODE_EXPIRED: failed,
        Decision.GIVE_UP: failed,
    }


async def _settle_one(services: Services, owed: Owed) -> str:
    try:
        settled = await _settle(services, owed)
    except errors.IngestError as exc:
        return await on_failure(exc, _owed_failures(services, owed))
    await _record(services, owed, settled)
    return settled.how


async def settle_owed(services: Services, connection_id: str) -> list[str]:
    """Settle every revocation the connection is owed, the oldest first; what happened to
    each. A RetryableError is raised again (after it is recorded) for the job to retry.

    An unlink, a relink's exchange and a resync may settle the same rows at once: a renewed
    Redis lock per connection (no Postgres lock across the requests) makes them take turns,
    and each reads the rows afresh once it has the lock, so an owed refresh token is spent
    once and a settled row is not settled twice."""
    async with RefreshLock(services.redis, f"{connection_id}:owed").hold():
        async with services.pool.acquire() as conn:
            owed = await revocations.owed_of(conn, services.cipher, connection_id)
        return [await _settle_one(services, row) for row in owed]


async def settle_owed_for_now(services: Services, connection_id: str) -> None:
    """:func:`settle_owed`, for a job whose own work comes next: what BB2 cannot take now
    (a retryable failure, recorded on its row) stays owed for a later job or the nightly run."""

    async def left_owed(exc: errors.IngestError) -> None:
        log.info("revocation_left_owed", reason=str(exc))

    try:
        await settle_owed(services, connection_id)
    except errors.IngestError as exc:
        await on_failure(exc, {Decision.RETRY_LATER: left_owed})
