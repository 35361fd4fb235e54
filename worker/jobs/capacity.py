"""The nightly resync's capacity model (pure): how much of the day's budget it may spend.

At ``rate`` requests per second an app has ``rate * 86,400`` requests a day; the nightly
run may use ``share`` of them. An incremental resync of an unchanged beneficiary costs
about three requests (a token refresh, Coverage and ExplanationOfBenefit searches); a full
pass costs a few more (Patient, and one EOB page per 50 claims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

SECONDS_PER_DAY: Final = 86_400
REQUESTS_PER_INCREMENTAL: Final = 3.0
REQUESTS_PER_FULL: Final = 5.0


@dataclass(frozen=True)
class NightlyCapacity:
    """What tonight can cover, and what the whole backlog would take."""

    due: int
    scheduled: int
    requests_expected: float
    daily_budget: float
    hours_for_backlog: float


def requests_per_resync(full_every_days: float, cadence_hours: float) -> float:
    """Mean requests of one resync, when one in every so many is a full pass."""
    full_share = min(1.0, cadence_hours / 24 / full_every_days)
    return full_share * REQUESTS_PER_FULL + (1 - full_share) * REQUESTS_PER_INCREMENTAL


def plan_night(due: int, *, rate: float, share: float, per_resync: float) -> NightlyCapacity:
    """How many of the ``due`` connections fit into tonight's share of the budget."""
    daily_budget = rate * SECONDS_PER_DAY * share
    scheduled = min(due, math.floor(daily_budget / per_resync))
    return NightlyCapacity(
        due=due,
        scheduled=scheduled,
        requests_expected=scheduled * per_resync,
        daily_budget=daily_budget,
        hours_for_backlog=due * per_resync / rate / 3600,
    )
