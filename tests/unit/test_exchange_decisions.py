"""The code exchange's pure decisions: a code's arrival, how long a retry may wait, what a
refusal is recorded as, and the grant a token answer makes."""

from __future__ import annotations

from datetime import UTC, datetime

from worker import errors
from worker.apps import App
from worker.bluebutton import oauth
from worker.constants import JOB_MAX_TRIES
from worker.jobs.exchange_rules import (
    LOST_IN_FLIGHT,
    arrival_of,
    grant_from,
    refusal_reason,
    retry_delay,
)
from worker.jobs.payloads import code_fingerprint
from worker.store.tokens import Tokens


def test_a_code_counts_from_its_events_arrival_else_its_enqueue_time() -> None:
    enqueued = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert arrival_of(1000.0, enqueued, now=5000.0) == 1000.0
    assert arrival_of(None, enqueued, now=5000.0) == enqueued.timestamp()
    assert arrival_of(None, None, now=5000.0) == 5000.0


def test_a_retry_never_waits_past_the_codes_life() -> None:
    assert retry_delay(None, 1, life_left=0.5) is None  # too little life left
    assert retry_delay(None, JOB_MAX_TRIES, life_left=50) is None  # no try left
    delay = retry_delay(30.0, 1, life_left=10)  # BB2 asked for 30 s; the code has 10
    assert delay is not None
    assert delay <= 9
    assert retry_delay(None, 1, life_left=50) is not None


def test_a_refusal_after_an_earlier_run_sent_the_code_is_a_loss_in_flight() -> None:
    refused = errors.AuthorizationFailed("BB2 refused the code (400 invalid_grant)")
    assert refusal_reason(refused, sent_before=True) == LOST_IN_FLIGHT
    assert refusal_reason(refused, sent_before=False) == str(refused)
    rejected = errors.ClientRejected("invalid_client")
    assert refusal_reason(rejected, sent_before=True) == "invalid_client"


def test_a_grant_carries_the_token_answer_and_the_apps_client() -> None:
    expires = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
    answer = oauth.TokenSet(
        access_token="access",
        refresh_token="refresh",
        expires_at=expires,
        scopes=frozenset({"patient/Patient.read", "openid"}),
        patient_id="-20140000008325",
        grant_expires_at=None,
    )
    app = App("acme", "sandbox", "https://bb2.test", "client-acme", "secret", 10)
    grant = grant_from(app, answer, "the-code", now=expires)
    assert grant.tokens == Tokens("access", "refresh", expires, generation=0)
    assert (grant.app, grant.client_id, grant.patient_id) == (
        "acme",
        "client-acme",
        answer.patient_id,
    )
    assert grant.scopes == ("openid", "patient/Patient.read")
    assert grant.code_sha256 == code_fingerprint("the-code")
    assert grant.consent_expires_at > expires  # a grant without its own end lasts 13 months
