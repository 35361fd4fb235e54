"""`make audit`: pip-audit over the pinned set, failing when it could not look."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _recipe(target: str) -> tuple[str, str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{target}:(?P<deps>.*)\n(?P<body>(?:\t.*\n)+)", text, re.M)
    assert match, f"no {target} target"
    return match["deps"], match["body"]


def test_audit_checks_the_pinned_set_strictly() -> None:
    _, body = _recipe("audit")
    assert "pip-audit --requirement constraints.txt" in body
    # Without --strict, a package whose advisories cannot be fetched is skipped: exit 0.
    assert "--strict" in body
    assert "exit 1" in body


def test_audit_is_pinned_and_not_part_of_make_test() -> None:
    pins = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    assert any(re.fullmatch(r"pip[-_]audit==[\d.]+", line) for line in pins)
    assert re.search(r'"pip-audit==[\d.]+"', (ROOT / "pyproject.toml").read_text("utf-8"))
    deps, _ = _recipe("test")
    assert "audit" not in deps
