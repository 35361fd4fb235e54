"""Request counters and the per-client sliding-window rate limit.

Both count a 1-second window the same way: half-open, (now - 1, now], so requests at t=0.0 and
t=1.0 are never in the same window.
"""

import bisect
import math
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

WINDOW_SECONDS = 1.0
# The by_status key of a FHIR request whose connection was dropped on purpose (no status sent).
DROPPED = "dropped"
UNKNOWN_CLIENT = "unknown"
# A request that arrives this soon after a 429 was already on its way when the 429 left:
# it is not counted as sent inside the cool-down.
IN_FLIGHT_GRACE = 0.05


def _arrive(window: deque[float], at: float) -> None:
    """Add an arrival in time order (requests are timestamped on arrival, but may reach the
    window slightly out of order)."""
    if not window or window[-1] <= at:
        window.append(at)
    else:
        window.insert(bisect.bisect_right(window, at), at)


def _slide(window: deque[float], now: float) -> deque[float]:
    """Forget the arrivals that fell out of the window ending at `now`."""
    while window and window[0] <= now - WINDOW_SECONDS:
        window.popleft()
    return window


class WindowPeak:
    """The most arrivals seen in any 1-second window, keeping only the last second's arrivals.

    The busiest window can always be slid until it ends on an arrival, so only the windows
    ending on the new arrival, or on those after it (an arrival timestamped a little out of
    order), can beat the peak: no history is needed beyond one second.
    """

    def __init__(self) -> None:
        self.peak = 0
        self._window: deque[float] = deque()

    def add(self, at: float) -> None:
        """Note one arrival (timestamps may come slightly out of order)."""
        window = self._window
        _arrive(window, at)
        _slide(window, window[-1])
        for end in (e for e in window if e >= at):
            inside = sum(1 for e in window if end - WINDOW_SECONDS < e <= end)
            self.peak = max(self.peak, inside)


class RequestStats:
    """Counts of the BB2 requests served: in total, per endpoint, status, client and second.

    Besides, the peak of admitted requests in a sliding second, overall and per client, and the
    span between the first and the last request counted.
    """

    def __init__(self) -> None:
        self.total = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_client: Counter[str] = Counter()
        self.by_second: Counter[str] = Counter()
        self.throttled_by_second: Counter[str] = Counter()
        self.backend_seconds = 0.0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._peak = WindowPeak()
        self._peak_by_client: dict[str, WindowPeak] = {}
        self.during_cooldown = 0
        self._cooldowns: dict[str, tuple[float, float]] = {}

    def record(self, endpoint: str, status: int | str, client_id: str | None, at: float) -> None:
        """Count one answered request that arrived at `at` (epoch seconds)."""
        self.total += 1
        self.by_endpoint[endpoint] += 1
        self.by_status[str(status)] += 1
        self.by_client[client_id or UNKNOWN_CLIENT] += 1
        self.by_second[str(int(at))] += 1
        if str(status) == "429":
            self.throttled_by_second[str(int(at))] += 1
        # Slow requests finish out of order: keep the extremes of the arrival times.
        self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.last_at = at if self.last_at is None else max(self.last_at, at)

    def record_throttled(self, client_id: str, at: float, retry_after: int) -> None:
        """A 429 told `client_id` to wait `retry_after` seconds from `at`."""
        start, end = self._cooldowns.get(client_id, (at, at))
        if at >= end:
            start = at  # a new cool-down; one already running is only lengthened
        self._cooldowns[client_id] = (start, max(end, at + retry_after))

    def record_arrival(self, client_id: str | None, at: float) -> None:
        """Count an app request that arrived while its client was told to wait."""
        start, end = self._cooldowns.get(client_id or UNKNOWN_CLIENT, (0.0, 0.0))
        if start + IN_FLIGHT_GRACE < at < end:
            self.during_cooldown += 1

    def record_admitted(self, client_id: str | None, at: float) -> None:
        """Note a request the rate limit let through, when it arrives."""
        self._peak.add(at)
        self._peak_by_client.setdefault(client_id or UNKNOWN_CLIENT, WindowPeak()).add(at)

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain JSON-ready data."""
        return {
            "total": self.total,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": dict(self.by_status),
            "by_client": dict(self.by_client),
            "by_second": dict(sorted(self.by_second.items())),
            "throttled_by_second": dict(sorted(self.throttled_by_second.items())),
            "backend_seconds": round(self.backend_seconds, 3),
            "max_per_second": max(self.by_second.values(), default=0),
            "max_in_window": self._peak.peak,
            "max_in_window_by_client": {
                client: peak.peak for client, peak in self._peak_by_client.items()
            },
            "first_request_at": self.first_at,
            "last_request_at": self.last_at,
            "during_cooldown": self.during_cooldown,
        }


class SlidingWindow:
    """Admits at most limit + burst requests per client id in any 1-second window; each
    registered app may have its own limit (``per_client``), as at BB2."""

    def __init__(
        self, limit: int | None, burst: int, per_client: Mapping[str, int | None] | None = None
    ) -> None:
        self._limit = limit
        self._burst = burst
        self._per_client = dict(per_client or {})
        self._admitted: dict[str, deque[float]] = {}

    def _limit_of(self, client_id: str) -> int | None:
        return self._per_client.get(client_id) or self._limit

    def admit(self, client_id: str, now: float) -> int | None:
        """Record a request and return None, or return the Retry-After seconds if throttled."""
        limit = self._limit_of(client_id)
        if limit is None:
            return None
        window = self._window(client_id, now)
        if len(window) >= limit + self._burst:
            return max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
        _arrive(window, now)
        return None

    def _window(self, client_id: str, now: float) -> deque[float]:
        return _slide(self._admitted.setdefault(client_id, deque()), now)
