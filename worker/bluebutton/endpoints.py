"""Blue Button 2.0 paths and scopes; the API version lives here and nowhere else."""

from __future__ import annotations

import re
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


def remove_dot_segments(path: str) -> str:
    """``path`` as a server resolves it (RFC 3986, 5.2.4), percent-encoded dots included:
    ``/v2/fhir/../o/token/`` is ``/v2/o/token/``."""
    segments = re.sub("%2e", ".", path, flags=re.IGNORECASE).split("/")
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if len(kept) > 1:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in {".", ".."}:
        kept.append("")  # "/a/b/.." is the directory "/a/"
    return "/".join(kept)


def is_fhir_url(url: str, base_url: str) -> bool:
    """True when ``url`` is a FHIR URL on the configured BB2 host (same scheme and port).

    BB2's next links are absolute URLs on its own host under /v2/fhir/ (FACTS.md, "FHIR searches");
    the path is checked as the server would resolve it, so dot segments cannot step out.
    """
    target, base = urlsplit(url), urlsplit(base_url)
    return (
        target.scheme == base.scheme
        and target.netloc.lower() == base.netloc.lower()
        and remove_dot_segments(target.path).startswith(FHIR_PATH)
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
