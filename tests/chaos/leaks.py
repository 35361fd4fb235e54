"""What must never reach a log line, and a scanner that finds it there.

The secrets of a run are gathered where they are made: the emulator records every code
and token it issues (rolled refresh tokens included), the jobs carry the verifiers, and
each beneficiary's Patient resource holds the personal fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.emulator.state import AuthRequest, EmulatorState
from worker.jobs.payloads import ConnectJob
from worker.local import CLIENT_SECRET

Secrets = Mapping[str, str]  # secret value -> what it is


class RecordingState(EmulatorState):
    """Emulator state that remembers every code and token it ever issued."""

    def __init__(self) -> None:
        super().__init__()
        self.issued: dict[str, str] = {}

    def issue_code(
        self, request: AuthRequest, patient_id: str, scopes: tuple[str, ...], lifetime: int
    ) -> str:
        code = super().issue_code(request, patient_id, scopes, lifetime)
        self.issued[code] = "authorization code"
        return code

    def issue_tokens(
        self, client_id: str, patient_id: str, scopes: tuple[str, ...], lifetime: int
    ) -> tuple[str, str]:
        access, refresh = super().issue_tokens(client_id, patient_id, scopes, lifetime)
        self.issued.update({access: "access token", refresh: "refresh token"})
        return access, refresh


def personal_fields(patient: Mapping[str, Any]) -> dict[str, str]:
    """A Patient's names, birth date and identifiers (MBI, beneficiary id)."""
    found = {patient["birthDate"]: "birth date"} if "birthDate" in patient else {}
    for name in patient.get("name", []):
        found.update({given: "given name" for given in name.get("given", [])})
        if "family" in name:
            found[name["family"]] = "family name"
    for identifier in patient.get("identifier", []):
        found[identifier["value"]] = "identifier"
    return found


def run_secrets(
    state: RecordingState, jobs: Iterable[ConnectJob], patients: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """Everything of a run that no log line may contain."""
    found: dict[str, str] = {CLIENT_SECRET: "client secret", **state.issued}
    for job in jobs:
        found.update({job.code: "authorization code", job.code_verifier: "code verifier"})
    for patient in patients:
        found.update(personal_fields(patient))
    return found


@dataclass(frozen=True)
class Leak:
    """A secret found in a log line (the line is not kept: it holds the secret)."""

    source: str
    line_number: int
    what: str


def _pattern(secrets: Secrets) -> re.Pattern[str]:
    # A secret counts when it stands alone: "Doe" in "Doe," but not in "Doesn't".
    alternatives = "|".join(re.escape(value) for value in sorted(secrets, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")


def find_leaks(lines: Iterable[str], secrets: Secrets, source: str = "") -> list[Leak]:
    """Every occurrence of a secret in ``lines``."""
    if not secrets:
        return []
    pattern = _pattern(secrets)
    return [
        Leak(source, number, secrets[match.group(0)])
        for number, line in enumerate(lines, start=1)
        for match in pattern.finditer(line)
    ]


def read_logs(directory: Path) -> dict[str, list[str]]:
    """The lines of every log file under ``directory``, by path relative to it."""
    return {
        str(path.relative_to(directory)): path.read_text(
            encoding="utf-8", errors="replace"
        ).splitlines()
        for path in sorted(directory.rglob("*.log"))
    }


def scan_logs(logs: Mapping[str, list[str]], secrets: Secrets) -> list[Leak]:
    """Every leak in every log."""
    return [leak for source, lines in logs.items() for leak in find_leaks(lines, secrets, source)]
