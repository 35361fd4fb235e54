"""Helpers shared by every test directory."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """The real BB2 responses (copied from shared/bluebutton/samples) the tests read."""
    return FIXTURES
