"""Request-level retry, pure: how often and how patiently the client repeats a request
(:class:`RetryPolicy`), which statuses are worth repeating, and what ``Retry-After`` and
``X-RateLimit-Limit`` ask for. What each BB2 answer means is :mod:`worker.bluebutton.answer_errors`;
when a job comes back after its requests gave up is :mod:`worker.runtime.job_retry`.

Nothing here does I/O or reads a clock, so every retry decision is unit-tested without a
network or sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

MAX_RETRY_AFTER: Final = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is repeated before the job gives up for now."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full-jitter delay before retry number ``attempt`` (0-based)."""
        return rand() * min(self.max_delay, self.base_delay * 2.0**attempt)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date.

    Returns None when the header is absent or unreadable, so the caller backs off instead;
    the result is clamped to [0, MAX_RETRY_AFTER] so a hostile value cannot park us forever.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    return max(0.0, min(MAX_RETRY_AFTER, seconds))


def is_transient_status(status: int) -> bool:
    """Statuses worth repeating the same request for."""
    return status == 429 or status in {500, 502, 503, 504}
