"""Reason codes: why a connection needs a new authorization or ended in error, as stable
words a receiver can switch on, each with a human text beside it.

They are derived from the failures the service already classifies (:mod:`worker.errors`):
:func:`reason_of` maps any failure onto one. A code, once published, never changes meaning;
a new failure gets a new code.
"""

from __future__ import annotations

from typing import Final

from worker import errors

# code -> the human text sent beside it (and listed in README, Events).
REASONS: Final[dict[str, str]] = {
    "consent_expired": "The beneficiary's consent lapsed at CMS; they must authorize again.",
    "access_revoked": "CMS no longer holds the grant (the beneficiary or CMS ended it, or a"
    " newer authorization replaced it); they must authorize again.",
    "refresh_interrupted": "CMS failed in the middle of renewing the access; the grant may"
    " live, but only a new authorization restores access.",
    "refresh_failed": "CMS refused to renew the access; only a new authorization helps.",
    "code_expired": "The authorization code could not be exchanged within its lifetime;"
    " the beneficiary must authorize again.",
    "authorization_refused": "CMS refused the authorization code (wrong code, verifier or"
    " redirect URI).",
    "authorization_lost": "The authorization code was sent but its answer was lost; CMS"
    " now refuses it as spent. The beneficiary must authorize again.",
    "app_inactive": "CMS holds the app inactive.",
    "app_unavailable": "The app is not registered here, or lacks the client that issued"
    " the connection's tokens.",
    "client_rejected": "CMS refused the app's client credentials.",
    "bb2_unavailable": "Blue Button kept failing or limiting us until every try was spent.",
    "bb2_refused": "Blue Button refused a request that cannot succeed as it is.",
    "bad_answer": "Blue Button answered something that breaks its protocol.",
    "token_unreadable": "The connection's stored tokens cannot be decrypted.",
    "internal_error": "An unexpected failure of this service.",
}


def _reconsent_reason(error: errors.ReconsentRequired) -> str:
    if isinstance(error, errors.RefreshInterrupted):
        return "refresh_interrupted"
    if not error.grant_ended:
        return "refresh_failed"
    # A FHIR 401 "expired" or a refresh's 401 invalid_grant: the grant lapsed (FACTS.md).
    return "consent_expired" if error.status == 401 else "access_revoked"


_BY_CLASS: Final[tuple[tuple[type[errors.IngestError], str], ...]] = (
    (errors.CodeExpired, "code_expired"),
    (errors.AuthorizationFailed, "authorization_refused"),
    (errors.AppPaused, "app_inactive"),
    (errors.AppUnavailable, "app_unavailable"),
    (errors.ClientRejected, "client_rejected"),
    (errors.RetryableError, "bb2_unavailable"),
    (errors.ProtocolError, "bad_answer"),
    (errors.PermanentError, "bb2_refused"),
    (errors.DecryptionError, "token_unreadable"),
)


def reason_of(error: BaseException) -> str:
    """The reason code a failure is reported under (``internal_error`` for anything this
    service did not classify)."""
    if isinstance(error, errors.ReconsentRequired):
        return _reconsent_reason(error)
    for kind, code in _BY_CLASS:
        if isinstance(error, kind):
            return code
    return "internal_error"
