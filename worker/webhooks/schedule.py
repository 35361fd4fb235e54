"""When a failed delivery is tried again, and when it is given up (pure: no clock, no I/O).

Exponential backoff with full jitter: after the n-th failed attempt the next one waits a
uniformly random time in ``[0, min(cap, base * 2**n))`` -- receivers that failed together do
not come back together. Retries go on until ``give_up`` has passed since the row became
pending (72 h by default: at least three days), then the row is dead-lettered."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.settings import Settings


@dataclass(frozen=True)
class Schedule:
    """The retry schedule of webhook deliveries (WEBHOOK_RETRY_* and WEBHOOK_GIVE_UP_HOURS)."""

    base: float
    cap: float
    give_up: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Schedule:
        """The schedule the settings configure."""
        return cls(
            base=settings.webhook_retry_base_seconds,
            cap=settings.webhook_retry_max_seconds,
            give_up=timedelta(hours=settings.webhook_give_up_hours),
        )

    def ceiling(self, attempts: int) -> float:
        """The longest wait after ``attempts`` failed attempts (the jitter draws below it)."""
        # base * 2**attempts; past 60 doublings the cap has long been reached.
        return min(self.cap, math.ldexp(self.base, min(attempts, 60)))

    def delay(self, attempts: int, rng: random.Random) -> float:
        """The wait before the next attempt, after ``attempts`` failed ones."""
        return rng.uniform(0, self.ceiling(attempts))

    def next_attempt(
        self, attempts: int, pending_since: datetime, now: datetime, rng: random.Random
    ) -> datetime | None:
        """When to try again after ``attempts`` failures, or None: dead-letter it now."""
        if now - pending_since >= self.give_up:
            return None
        return now + timedelta(seconds=self.delay(attempts, rng))
