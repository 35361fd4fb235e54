"""The figures of a chaos run, decided from what the database holds, what the emulator
serves and what the workers logged. Pure functions: the scenarios gather, these judge.

- **lost**: a resource the emulator serves a connection that is not stored as served,
  unless the connection ended in ``error`` or ``needs_reauth`` with its reason recorded
  (a *recorded error*: an operator sees what is missing and why). A connection left
  ``pending`` or ``active`` with resources missing loses every one of them.
- **retries**: jobs that ended in a retry (arq ran them again), and requests repeated
  within a job (5xx, timeouts, dropped connections, 429s).
- **duplicates**: stored rows whose (type, id inside the JSON) repeats within a
  connection or differs from the row's key, plus pages a succeeded run counted beyond
  the pages one pass over the connection takes (a page stored twice after a resume).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from worker.constants import EOB_PAGE_SIZE

Key = tuple[str, str]
RECORDED = ("error", "needs_reauth")


@dataclass(frozen=True)
class Run:
    """A sync run as ``sync_runs`` holds it."""

    status: str
    pages: int
    error: str | None


@dataclass(frozen=True)
class Connection:
    """One connection at the end of a scenario: its row, runs, stored rows, and what the
    emulator serves it."""

    connection_id: str
    status: str
    last_error: str | None
    runs: Sequence[Run]
    rows: Sequence[tuple[str, str, Any]]  # (resource_type, resource_id, resource)
    served: Mapping[Key, Any]

    @property
    def recorded_error(self) -> bool:
        """Ended short of everything, and says why."""
        return self.status in RECORDED and bool(self.last_error)


@dataclass(frozen=True)
class Figures:
    """One row of the chaos table; ``problems`` holds anything else that went wrong."""

    scenario: str
    jobs_run: int
    retries: int  # jobs that ended in a retry and ran again
    request_retries: int  # requests repeated within a job
    rows_expected: int
    rows_stored: int
    recorded_errors: int
    duplicates: int
    lost: int
    leaks: int
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Nothing lost, duplicated or leaked, and nothing else went wrong."""
        return not (self.lost or self.duplicates or self.leaks or self.problems)


def pages_of_one_pass(served: Mapping[Key, Any]) -> int:
    """Pages a full pass fetches: Patient and Coverage one each, EOBs 50 to a page."""
    eobs = sum(1 for kind, _ in served if kind == "ExplanationOfBenefit")
    patient = 1 if any(kind == "Patient" for kind, _ in served) else 0
    return patient + 1 + max(1, math.ceil(eobs / EOB_PAGE_SIZE))


def lost(connection: Connection) -> int:
    """Served resources not stored as served, unless the connection recorded an error."""
    if connection.recorded_error:
        return 0
    stored = {(kind, rid): resource for kind, rid, resource in connection.rows}
    return sum(1 for key, value in connection.served.items() if stored.get(key) != value)


def duplicates(connection: Connection) -> int:
    """Rows stored twice or under a wrong key, and pages counted twice by a succeeded run."""
    by_content_id = Counter((kind, resource.get("id")) for kind, _, resource in connection.rows)
    repeated = sum(count - 1 for count in by_content_id.values())
    misfiled = sum(1 for _, rid, resource in connection.rows if resource.get("id") != rid)
    one_pass = pages_of_one_pass(connection.served)
    extra_pages = sum(
        max(0, run.pages - one_pass) for run in connection.runs if run.status == "succeeded"
    )
    return repeated + misfiled + extra_pages


def unrecorded_ends(connection: Connection) -> list[str]:
    """What is wrong with how the connection ended, beyond lost rows."""
    if connection.status == "active":
        return []
    if not connection.recorded_error:
        return [f"{connection.connection_id} ended {connection.status} without a reason"]
    failed = [run for run in connection.runs if run.status == "failed"]
    if failed and failed[-1].error != connection.last_error:
        return [f"{connection.connection_id}: its run and its row disagree on the error"]
    return []


# A request repeated within a job after a 5xx, a timeout, a dropped connection or a 429.
REQUEST_RETRIES = ('"bb2_transient_failure"', '"bb2_rate_limited"')


def job_counts(lines: Iterable[str]) -> tuple[int, int, int]:
    """From the workers' JSON log lines: jobs that ran to an outcome (a job killed with its
    replica logs nothing), those that ended in a retry, and requests repeated in a job."""
    runs = retries = repeats = 0
    for line in lines:
        if any(event in line for event in REQUEST_RETRIES):
            repeats += 1
        elif '"job_finished"' in line:
            runs += 1
            retries += orjson.loads(line).get("outcome") == "retry"
    return runs, retries, repeats


def figures(
    scenario: str,
    connections: Sequence[Connection],
    log_lines: Sequence[str],
    leaks: int,
    problems: Sequence[str] = (),
) -> Figures:
    """The scenario's row of the table."""
    jobs_run, retries, request_retries = job_counts(log_lines)
    found = list(problems)
    for connection in connections:
        found += unrecorded_ends(connection)
    return Figures(
        scenario=scenario,
        jobs_run=jobs_run,
        retries=retries,
        request_retries=request_retries,
        rows_expected=sum(len(c.served) for c in connections),
        rows_stored=sum(len(c.rows) for c in connections),
        recorded_errors=sum(1 for c in connections if c.recorded_error),
        duplicates=sum(duplicates(c) for c in connections),
        lost=sum(lost(c) for c in connections),
        leaks=leaks,
        problems=tuple(found),
    )


HEADER = (
    "scenario",
    "jobs run",
    "retries (jobs / requests)",
    "rows expected",
    "rows stored",
    "recorded errors",
    "duplicates",
    "lost",
    "leaked secrets",
)


def table(rows: Iterable[Figures]) -> str:
    """The figures as a Markdown table (the README quotes it)."""
    return markdown_table(HEADER, [_cells(row) for row in rows])


def _cells(row: Figures) -> tuple[object, ...]:
    return (
        row.scenario,
        row.jobs_run,
        f"{row.retries} / {row.request_retries}",
        f"{row.rows_expected:,}",
        f"{row.rows_stored:,}",
        row.recorded_errors,
        row.duplicates,
        row.lost,
        row.leaks,
    )


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, passed: bool = False
) -> str:
    """Rows as a Markdown table: the first column left-aligned, the figures right-aligned,
    and with ``passed`` a last (yes/NO) column left-aligned too."""
    right = len(header) - 2 if passed else len(header) - 1
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * right + (" --- |" if passed else ""),
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
