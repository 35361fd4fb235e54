"""The CMS-events rows of ``make chaos`` in reduced form: three people, few claims."""

from __future__ import annotations

import pytest

from tests.chaos.cms_events import EVENT_SCENARIOS, EventScenario, run_event
from tests.chaos.run import Size, Target
from tests.integration.conftest import DATABASE_URL, REDIS_URL

SMALL = Size(beneficiaries=3, claims=25, rate_limit=50, concurrency=4)


@pytest.mark.parametrize("scenario", EVENT_SCENARIOS, ids=lambda s: s.name.replace(" ", "-"))
async def test_cms_event_costs_nobody_anything(scenario: EventScenario, migrated: str) -> None:
    figures = await run_event(scenario, Target(DATABASE_URL, REDIS_URL), SMALL)
    assert figures.problems == ()
    assert (figures.lost, figures.wrongly_deleted, figures.wrongly_ended, figures.leaked) == (
        0,
        0,
        0,
        0,
    )
    if scenario.name == "refresh then 502":
        assert figures.reconsent == 1  # CMS's failure: the rotated token never arrived
