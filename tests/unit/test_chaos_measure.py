"""The chaos table's judgements: lost, duplicated, leaked, counted."""

from __future__ import annotations

from typing import Any

import orjson

from tests.chaos.cms_events import Held, lost_and_wrongly_deleted
from tests.chaos.leaks import find_leaks, personal_fields, scan_logs
from tests.chaos.measure import (
    Connection,
    Key,
    Run,
    duplicates,
    figures,
    job_counts,
    lost,
    pages_of_one_pass,
    table,
    unrecorded_ends,
)

EOB = "ExplanationOfBenefit"


def _served(eobs: int) -> dict[Key, Any]:
    served: dict[Key, Any] = {("Patient", "p1"): {"id": "p1", "resourceType": "Patient"}}
    served["Coverage", "c1"] = {"id": "c1"}
    served.update({(EOB, f"e{i}"): {"id": f"e{i}", "n": i} for i in range(eobs)})
    return served


def _connection(
    served: dict[Key, Any],
    rows: list[tuple[str, str, Any]] | None = None,
    *,
    status: str = "active",
    last_error: str | None = None,
    runs: tuple[Run, ...] = (),
) -> Connection:
    stored = [(kind, rid, value) for (kind, rid), value in served.items()]
    return Connection("c", status, last_error, runs, stored if rows is None else rows, served)


def test_everything_stored_loses_and_repeats_nothing() -> None:
    served = _served(120)
    connection = _connection(served, runs=(Run("succeeded", 5, None),))
    assert pages_of_one_pass(served) == 1 + 1 + 3
    assert (lost(connection), duplicates(connection)) == (0, 0)
    assert unrecorded_ends(connection) == []


def test_missing_or_stale_rows_of_an_active_connection_are_lost() -> None:
    served = _served(3)
    rows = [(k, r, v) for (k, r), v in served.items() if r != "e0"]
    rows = [(k, r, {**v, "n": -1} if r == "e1" else v) for k, r, v in rows]
    assert lost(_connection(served, rows)) == 2


def test_a_recorded_error_is_not_loss_but_silence_is() -> None:
    served = _served(3)
    recorded = _connection(
        served, [], status="error", last_error="bad page", runs=(Run("failed", 2, "bad page"),)
    )
    assert lost(recorded) == 0
    assert unrecorded_ends(recorded) == []
    silent = _connection(served, [], status="pending")
    assert lost(silent) == len(served)
    assert unrecorded_ends(silent) == ["c ended pending without a reason"]
    disagreeing = _connection(
        served, [], status="error", last_error="x", runs=(Run("failed", 2, "y"),)
    )
    assert unrecorded_ends(disagreeing) == ["c: its run and its row disagree on the error"]


def test_rows_stored_twice_misfiled_or_pages_counted_twice_are_duplicates() -> None:
    served = _served(60)
    rows = [(k, r, v) for (k, r), v in served.items()]
    twice = [*rows, (EOB, "copy-of-e1", {"id": "e1", "n": 1})]  # repeated and misfiled
    assert duplicates(_connection(served, twice)) == 2
    runs = (Run("succeeded", 4 + 1, None), Run("failed", 9, "x"))
    assert duplicates(_connection(served, rows, runs=runs)) == 1


def _line(event: str, **fields: Any) -> str:
    return orjson.dumps({"event": event, **fields}).decode()


def test_jobs_and_retries_are_counted_from_the_log_lines() -> None:
    lines = [
        _line("job_finished", outcome="retry"),
        _line("bb2_transient_failure", error="BB2 answered 503"),
        _line("sync_succeeded"),
        _line("bb2_rate_limited"),
        _line("job_finished", outcome="active"),
        "asyncpg.pool Failed to restore the pool connection floor; retrying",
    ]
    assert job_counts(lines) == (2, 1, 2)


def test_figures_and_their_table() -> None:
    served = _served(2)
    good = _connection(served)
    bad = Connection("d", "pending", None, (), [], served)
    row = figures("scenario", [good, bad], [_line("job_finished", outcome="active")], 0)
    assert (row.rows_expected, row.rows_stored, row.lost, row.jobs_run) == (8, 4, 4, 1)
    assert not row.passed
    assert row.problems == ("d ended pending without a reason",)
    rendered = table([row]).splitlines()
    assert rendered[0].startswith("| scenario | jobs run | retries (jobs / requests) |")
    assert rendered[2] == "| scenario | 1 | 0 / 0 | 8 | 4 | 0 | 0 | 4 | 0 |"


def test_the_scanner_finds_each_secret_standing_alone() -> None:
    secrets = {"tok-EN_1": "access token", "Doe": "family name", "1959-01-22": "birth date"}
    lines = [
        '{"event": "x", "header": "Bearer tok-EN_1"}',
        "Doesn't matter; nor does xDoe",
        "born 1959-01-22, Doe.",
    ]
    found = find_leaks(lines, secrets, "w.log")
    assert [(leak.line_number, leak.what) for leak in found] == [
        (1, "access token"),
        (3, "birth date"),
        (3, "family name"),
    ]
    assert scan_logs({"a.log": lines[1:2]}, secrets) == []
    assert find_leaks(lines, {}) == []


def test_a_patients_personal_fields() -> None:
    patient = {
        "name": [{"family": "Doe", "given": ["Jane", "Q"]}],
        "birthDate": "1959-01-22",
        "identifier": [{"system": "mbi", "value": "1S00E00AA00"}],
    }
    assert personal_fields(patient) == {
        "Doe": "family name",
        "Jane": "given name",
        "Q": "given name",
        "1959-01-22": "birth date",
        "1S00E00AA00": "identifier",
    }


def _held(before: int, stored: int, served: int, audited: int) -> Held:
    """EOBs e0..e<n-1> held before, stored at the end, served by CMS at the end."""
    keys = [(EOB, f"e{i}") for i in range(max(before, stored, served))]
    return Held(set(keys[:before]), set(keys[:stored]), set(keys[:served]), audited)


def test_a_deletion_the_audit_log_records_of_what_cms_removed_is_no_loss() -> None:
    assert lost_and_wrongly_deleted(_held(5, 3, 3, 2), healthy=True) == (0, 0)


def test_a_disappearance_no_audited_deletion_accounts_for_is_lost() -> None:
    assert lost_and_wrongly_deleted(_held(5, 3, 3, 0), healthy=True) == (2, 0)
    assert lost_and_wrongly_deleted(_held(5, 3, 3, 1), healthy=True) == (1, 0)
    # A connection waiting for re-consent keeps what it held: nothing may vanish from it.
    assert lost_and_wrongly_deleted(_held(5, 3, 5, 0), healthy=False) == (2, 0)


def test_an_audited_deletion_of_what_cms_still_serves_is_wrong_even_once_restored() -> None:
    assert lost_and_wrongly_deleted(_held(5, 5, 5, 5), healthy=True) == (0, 5)
    missing_and_wrong = lost_and_wrongly_deleted(_held(5, 3, 5, 2), healthy=True)
    assert missing_and_wrong == (2, 2)
