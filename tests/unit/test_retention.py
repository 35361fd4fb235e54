"""The retention rules a purge asks again when it runs, and how a purge is queued."""

from datetime import UTC, datetime, timedelta

import pytest

from worker.jobs.payloads import RevocationRetryJob, UnlinkJob
from worker.retention import purge_cutoffs
from worker.settings import load_settings

NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
DUE = purge_cutoffs(
    load_settings({"DORMANT_RETENTION_DAYS": "30", "ERROR_RETENTION_DAYS": "10"}), NOW
)


@pytest.mark.parametrize(
    ("status", "days", "due"),
    [
        ("needs_reauth", 31, True),
        ("needs_reauth", 30, False),  # exactly the period: not yet, as the listing says
        ("needs_reauth", 29, False),
        ("error", 11, True),
        ("error", 9, False),
        ("active", 400, False),  # a re-consent since the purge was decided
        ("pending", 400, False),
        ("revoked", 400, False),  # already unlinked: by the purge's first try, or the person
    ],
)
def test_a_connection_is_due_for_purge_only_past_its_status_period(
    status: str, days: int, due: bool
) -> None:
    assert DUE.covers(status, NOW - timedelta(days=days)) is due


def test_a_purge_and_a_revocation_retry_have_job_ids_of_their_own() -> None:
    # An upstream's unlink must not collapse into a purge or retry that a relink made void.
    plain = UnlinkJob(connection_id="c1")
    purge = UnlinkJob(connection_id="c1", purge=True)
    retry = RevocationRetryJob(connection_id="c1")
    assert (plain.job_id(), purge.job_id(), retry.job_id()) == (
        "unlink:c1",
        "unlink:c1:purge",
        "unlink:c1:retry",
    )
    # The retry is the same job with the same arguments on the wire.
    assert (retry.job_name, retry.model_dump()) == (plain.job_name, plain.model_dump())
