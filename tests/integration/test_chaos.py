"""``make chaos`` in a reduced form: every scenario on four beneficiaries (the restarts are
in test_restarts.py). Nothing lost, duplicated or leaked; a bad answer costs exactly the
connection that received it, with the reason recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.run import Size, Target, run_scenario
from tests.chaos.scenarios import SCENARIOS, Scenario
from tests.integration.conftest import DATABASE_URL, REDIS_URL

SMALL = Size(beneficiaries=4, claims=60, rate_limit=20, concurrency=2)
TARGET = Target(DATABASE_URL, REDIS_URL)


@pytest.mark.parametrize(
    "scenario",
    [s for s in SCENARIOS if s.disruption not in ("redis", "postgres")],
    ids=lambda s: s.slug,
)
async def test_a_scenario_loses_duplicates_and_leaks_nothing(
    migrated: str, scenario: Scenario, tmp_path: Path
) -> None:
    found = (await run_scenario(scenario, TARGET, tmp_path, SMALL)).figures
    assert found.problems == ()
    assert (found.lost, found.duplicates, found.leaks) == (0, 0, 0)
    # Beyond the expected errors, only exchanges lost in flight at a kill (each recorded).
    lost_in_flight = found.recorded_errors - scenario.expected_errors
    assert 0 <= lost_in_flight <= scenario.lost_in_flight_allowed
    assert found.rows_expected == SMALL.beneficiaries * (1 + 4 + SMALL.claims)
    if not found.recorded_errors:
        assert found.rows_stored == found.rows_expected
    assert found.jobs_run >= SMALL.beneficiaries - (scenario.disruption == "sigkill")
