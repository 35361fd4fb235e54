"""The event catalog: reason codes from the failure tree, data checked against the
declaration, and the schema files derived from it one-to-one."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker import errors
from worker.events.catalog import BY_NAME, TYPES
from worker.events.emit import checked_data
from worker.events.reasons import REASONS, reason_of
from worker.events.schemas import rendered

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "events"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (errors.ReconsentRequired("lapsed", status=401, grant_ended=True), "consent_expired"),
        (errors.ReconsentRequired("deleted", status=403, grant_ended=True), "access_revoked"),
        (errors.ReconsentRequired("gone", status=400, grant_ended=True), "access_revoked"),
        (errors.ReconsentRequired("spent", status=400), "refresh_failed"),
        (errors.RefreshInterrupted("mid-refresh", status=502), "refresh_interrupted"),
        (errors.CodeExpired("old"), "code_expired"),
        (errors.AuthorizationFailed("bad code"), "authorization_refused"),
        (errors.AppPaused("inactive"), "app_inactive"),
        (errors.AppUnavailable("not registered"), "app_unavailable"),
        (errors.ClientRejected("invalid_client"), "client_rejected"),
        (errors.RateLimited("429"), "bb2_unavailable"),
        (errors.EdgeError("502"), "bb2_unavailable"),
        (errors.ProtocolError("bad bundle"), "bad_answer"),
        (errors.NotFound("404"), "bb2_refused"),
        (errors.KeyMissing("k1"), "token_unreadable"),
        (RuntimeError("a bug"), "internal_error"),
    ],
)
def test_every_classified_failure_has_its_reason_code(error: Exception, reason: str) -> None:
    assert reason_of(error) == reason
    assert reason in REASONS


def test_reason_codes_are_stable_words_with_a_text() -> None:
    for code, text in REASONS.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code)
        assert text.endswith(".")
        assert len(text) > 20


def test_data_gets_its_reason_text_and_iso_times() -> None:
    at = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    data = checked_data(
        BY_NAME["connection.needs_reauth"], {"reason": "consent_expired", "consent_expires_at": at}
    )
    assert data == {
        "reason": "consent_expired",
        "reason_text": REASONS["consent_expired"],
        "consent_expires_at": "2026-12-01T03:00:00+00:00",
    }


@pytest.mark.parametrize(
    "data",
    [
        {"reason": "consent_expired", "consent_expires_at": None, "patient_id": "-19990000000001"},
        {"reason": "consent_expired"},
        {"reason": "no_such_reason", "consent_expires_at": None},
    ],
)
def test_data_the_catalog_does_not_declare_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"needs_reauth"):
        checked_data(BY_NAME["connection.needs_reauth"], data)


def test_the_schema_files_are_the_catalogs_one_to_one() -> None:
    expected = rendered()
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(expected)
    assert set(expected) == {"envelope.json", *(f"{t.name}.json" for t in TYPES)}
    for name, content in expected.items():
        assert (SCHEMAS / name).read_bytes() == content, "run `make schemas`"
