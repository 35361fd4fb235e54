"""The one exception tree of bluebutton-ingest, and its decision table.

Every failure that can reach a job is an :class:`IngestError`, and every class carries the
:class:`Decision` that tells the job what to do next (in capitals below); :func:`decide`
maps any exception, a driver's or a library's included, onto one::

    IngestError                      GIVE_UP unless a subclass says otherwise
    ├── ConfigError                  a setting is missing or wrong: fix the deployment
    │   └── AppUnavailable           a connection's app is not registered (or lacks its client)
    ├── InvalidJob                   a job payload that can never succeed: give up, record it
    │   └── GrantConflict            a connect would move a live connection to another app or
    │                                patient: give up; the connection must be unlinked first
    ├── UnknownConnection            a job names a connection we do not have: give up
    ├── ConnectionRevoked            SUPERSEDED: the connection was unlinked while the job
    │                                worked on it: write nothing more, stop quietly
    ├── DecryptionError              a stored token cannot be decrypted (tampered, moved to
    │   │                            another row, unknown format): give up on the connection
    │   └── KeyMissing               RETRY_SOON: sealed under a key id this replica lacks (a
    │                                rolling key change): another replica or a fix helps
    ├── ServiceUnavailable           RETRY_SOON: our own Postgres or Redis is away
    │   ├── DatabaseUnavailable      Postgres refused, dropped or is starting up
    │   └── RedisUnavailable         Redis refused, dropped, timed out or is loading its data
    └── BlueButtonError              BB2 refused, failed, or answered nonsense
        ├── RetryableError           RETRY_LATER (.retry_after seconds, if the server said)
        │   ├── RateLimited          429 Too Many Requests
        │   ├── ServerError          5xx: BB2 or its backend failed
        │   │   └── EdgeError        5xx that is not BB2's JSON: may never have reached CMS
        │   ├── EdgeRefused          403 that is not BB2's withholding answer: says nothing
        │   │                        about consent (an edge's HTML page, a 403 on Coverage)
        │   └── TransportError       timeout, refused or reset connection
        ├── AppPaused                APP_PAUSED: CMS made the app inactive ("temporarily
        │                            inactive"); every job of that app waits, nobody's
        │                            consent changed
        ├── TokenExpired             REFRESH the access token, then try once more
        ├── ReconsentRequired        RECONSENT: only a new authorization helps
        │   │                        (.grant_ended: CMS said the grant is gone or lapsed)
        │   └── RefreshInterrupted   CMS failed mid-refresh (its JSON 502/404 after rotating
        │                            the token): the grant lives, the new token never came
        └── PermanentError           GIVE_UP: repeating the same request cannot help
            ├── AuthorizationFailed  the code exchange was refused (bad code, verifier or redirect)
            ├── CodeExpired          CODE_EXPIRED: the code outlived its 60 s before its turn:
            │                        never sent; the beneficiary must authorize again
            ├── ClientRejected       our client id or secret is wrong (invalid_client)
            ├── BadRequest           400: a parameter BB2 does not accept
            │   └── CursorPastEnd    RESTART_TYPE: 400 "startIndex ... must be less than": read
            │                        that type again from its first page (once)
            ├── Forbidden            403 in BB2's JSON on a withholdable type: data is withheld
            ├── NotFound             404: no such resource for this beneficiary
            └── ProtocolError        a response we cannot trust: bad JSON, bad Bundle, bad link

    anything else                    RETRY_SOON when it stands for an outage of Postgres or
                                     Redis (worker.outages.unavailable), else GIVE_UP (a bug)

Messages never contain a token, code, secret or personal data: they are stored in
``connections.last_error`` and shown to operators.
"""

from __future__ import annotations

import enum


class Decision(enum.Enum):
    """What a job does after a failure (the capitals of the tree above)."""

    RETRY_SOON = "retry_soon"  # our own service is away: back in seconds (worker.outages)
    RETRY_LATER = "retry_later"  # BB2 may pass: back later, growing delays; error at the end
    REFRESH = "refresh"
    RECONSENT = "reconsent"  # needs_reauth
    APP_PAUSED = "app_paused"  # wait for CMS to make the app active again; no try spent
    SUPERSEDED = "superseded"  # a later word (an unlink) stands: stop quietly
    RESTART_TYPE = "restart_type"
    CODE_EXPIRED = "code_expired"
    GIVE_UP = "give_up"  # error, the reason recorded


class IngestError(Exception):
    """Base of every error this service raises on purpose."""

    decision: Decision = Decision.GIVE_UP


class ConfigError(IngestError):
    """A setting is missing or invalid; the message names the variable."""


class AppUnavailable(ConfigError):
    """The app a job needs is not registered, lacks credentials, or no longer holds the
    client that issued a connection's tokens: the connection cannot be served until an
    operator fixes the registry (or the beneficiary connects again)."""


class InvalidJob(IngestError):
    """A job payload that fails validation; retrying cannot fix it."""


class GrantConflict(InvalidJob):
    """A connect's grant names another app or beneficiary than the live connection holds:
    storing it would hand one organisation's (or person's) connection to another."""


class UnknownConnection(IngestError):
    """A job refers to a connection id that is not in the database."""


class ConnectionRevoked(IngestError):
    """The connection was unlinked while a job was working on it: write nothing more."""

    decision = Decision.SUPERSEDED


class DecryptionError(IngestError):
    """A stored token cannot be decrypted: unknown key id, tampering, or another row."""


class KeyMissing(DecryptionError):
    """A stored value is sealed under a key id this replica does not hold: a replica of a
    rolling key change, or a key dropped too early. Not the token's fault: retry (on a
    replica that has the key, or once the deployment is fixed) and alert, never give up."""

    decision = Decision.RETRY_SOON

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key for key id {key_id!r} (TOKEN_ENCRYPTION_KEY)")
        self.key_id = key_id


class ServiceUnavailable(IngestError):
    """Postgres or Redis could not be reached; a restart takes seconds, so the job comes back."""

    decision = Decision.RETRY_SOON


class DatabaseUnavailable(ServiceUnavailable):
    """Postgres refused or dropped the connection, or is still starting up."""


class RedisUnavailable(ServiceUnavailable):
    """Redis refused, dropped or timed out, or is still loading its data."""


class BlueButtonError(IngestError):
    """A failure talking to BB2; ``decision`` says how to react."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableError(BlueButtonError):
    """A failure that may pass: try the same request again later."""

    decision = Decision.RETRY_LATER

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """BB2 answered 429; ``retry_after`` holds its Retry-After in seconds when given."""


class ServerError(RetryableError):
    """BB2 answered 5xx."""


class EdgeError(ServerError):
    """A 5xx whose body is not BB2's JSON: an edge or gateway answered, and the request may
    never have reached CMS (so a refresh token sent in it may still be unspent)."""


class EdgeRefused(RetryableError):
    """A 403 that is not BB2's answer about withheld data: an edge's HTML page, or a 403 on
    a type nobody can withhold. It says nothing about consent (FACTS.md, Errors)."""


class TransportError(RetryableError):
    """The request did not complete: timeout, refused or reset connection.

    ``maybe_delivered`` is False only when the request certainly never reached BB2 (the
    connection was refused or never opened); a one-time code or refresh token sent in a
    request that may have been delivered may be spent.
    """

    def __init__(self, message: str, *, maybe_delivered: bool = True) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered


class TokenExpired(BlueButtonError):
    """A FHIR call answered 401: refresh the access token and try once more."""

    decision = Decision.REFRESH


class AppPaused(BlueButtonError):
    """CMS made the app inactive ("This application, NAME, is temporarily inactive."):
    FHIR answers 401, refresh and revocation 403. The app's jobs wait; no grant changed."""

    decision = Decision.APP_PAUSED


class ReconsentRequired(BlueButtonError):
    """Only a new authorization helps. ``grant_ended`` is True when CMS said the grant
    itself is gone: a refresh answered 403 ``invalid_grant`` (deleted), 401
    ``invalid_grant`` (lapsed) or 400 ``invalid_request`` (the token no longer exists)."""

    decision = Decision.RECONSENT

    def __init__(
        self, message: str, *, status: int | None = None, grant_ended: bool = False
    ) -> None:
        super().__init__(message, status=status)
        self.grant_ended = grant_ended


class RefreshInterrupted(ReconsentRequired):
    """CMS answered a refresh with its own 502 or 404 after minting new tokens: the old
    refresh token is spent and the new one never arrived. The grant is alive."""


class PermanentError(BlueButtonError):
    """The request cannot succeed as it is; record the reason and stop."""

    decision = Decision.GIVE_UP


class AuthorizationFailed(PermanentError):
    """The authorization code exchange was refused."""


class CodeExpired(PermanentError):
    """The authorization code was too old to send when its budget slot came (it lives 60 s
    at CMS, FACTS.md): the request was not sent, and the beneficiary must authorize again."""

    decision = Decision.CODE_EXPIRED


class ClientRejected(PermanentError):
    """BB2 does not accept our client credentials (``invalid_client``)."""


class BadRequest(PermanentError):
    """BB2 answered 400 to a FHIR request."""


class CursorPastEnd(BadRequest):
    """A saved ``startIndex`` is at or past the end of the results (claims were removed)."""

    decision = Decision.RESTART_TYPE


class Forbidden(PermanentError):
    """BB2 answered 403 in its JSON: the scope was not granted, or the data is withheld."""


class NotFound(PermanentError):
    """BB2 answered 404."""


class ProtocolError(PermanentError):
    """BB2's answer breaks the protocol: malformed JSON, a broken Bundle, a foreign link."""
