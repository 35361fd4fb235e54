"""Blue Button 2.0 paths and scopes; the API version lives here and nowhere else."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

API_VERSION: Final = "v2"

AUTHORIZE_PATH: Final = f"/{API_VERSION}/o/authorize/"
TOKEN_PATH: Final = f"/{API_VERSION}/o/token/"
REVOKE_TOKEN_PATH: Final = f"/{API_VERSION}/o/revoke_token/"
# CMS's own revoke: revokes the token and deletes the beneficiary's data access grant.
REVOKE_GRANT_PATH: Final = f"/{API_VERSION}/o/revoke/"
FHIR_PATH: Final = f"/{API_VERSION}/fhir/"
METADATA_PATH: Final = f"{FHIR_PATH}metadata"

SCOPE_PATIENT: Final = "patient/Patient.read"
SCOPE_COVERAGE: Final = "patient/Coverage.read"
SCOPE_EOB: Final = "patient/ExplanationOfBenefit.read"
SCOPE_PROFILE: Final = "profile"
# No "openid": BB2 never issues an id_token.
REQUESTED_SCOPES: Final = (SCOPE_PATIENT, SCOPE_COVERAGE, SCOPE_EOB, SCOPE_PROFILE)


def is_fhir_url(url: str, base_url: str) -> bool:
    """True when ``url`` is a FHIR URL on the configured BB2 host (same scheme and port)."""
    target, base = urlsplit(url), urlsplit(base_url)
    return (
        target.scheme == base.scheme
        and target.netloc.lower() == base.netloc.lower()
        and target.path.startswith(FHIR_PATH)
        and not target.username
    )


def endpoint_kind(url: str) -> str:
    """A name for metrics and logs that says which endpoint, never which patient."""
    path = urlsplit(url).path
    named = {
        TOKEN_PATH: "token",
        REVOKE_TOKEN_PATH: "revoke_token",
        REVOKE_GRANT_PATH: "revoke",
    }
    if path in named:
        return named[path]
    if path.startswith(FHIR_PATH):
        return path.removeprefix(FHIR_PATH).split("/")[0] or "fhir"
    return "other"
