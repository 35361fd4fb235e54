"""Request counters and the per-client sliding-window rate limit."""

import math
from collections import Counter, deque
from typing import Any

# X-RateLimit-* still have to be numbers when no limit is configured.
UNLIMITED = 1_000_000
WINDOW_SECONDS = 1.0


class RequestStats:
    """Counts of the BB2 requests served: in total, per endpoint, status, client and second."""

    def __init__(self) -> None:
        self.total = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_client: Counter[str] = Counter()
        self.by_second: Counter[str] = Counter()

    def record(self, endpoint: str, status: int, client_id: str | None, second: int) -> None:
        """Count one answered request; `second` is its epoch second."""
        self.total += 1
        self.by_endpoint[endpoint] += 1
        self.by_status[str(status)] += 1
        self.by_client[client_id or "unknown"] += 1
        self.by_second[str(second)] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain JSON-ready data."""
        return {
            "total": self.total,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": dict(self.by_status),
            "by_client": dict(self.by_client),
            "by_second": dict(sorted(self.by_second.items())),
            "max_per_second": max(self.by_second.values(), default=0),
        }


class SlidingWindow:
    """Admits at most limit + burst requests per client id in any 1-second window."""

    def __init__(self, limit: int | None, burst: int) -> None:
        self._capacity = None if limit is None else limit + burst
        self._limit = limit
        self._admitted: dict[str, deque[float]] = {}

    def admit(self, client_id: str, now: float) -> int | None:
        """Record a request and return None, or return the Retry-After seconds if throttled."""
        if self._capacity is None:
            return None
        window = self._window(client_id, now)
        if len(window) >= self._capacity:
            return max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
        window.append(now)
        return None

    def headers(self, client_id: str | None, now: float) -> dict[str, str]:
        """X-RateLimit-Limit/-Remaining/-Reset (seconds until a slot frees) for a response."""
        if self._capacity is None or self._limit is None or client_id is None:
            return _header_values(UNLIMITED, UNLIMITED, 0)
        window = self._window(client_id, now)
        reset = math.ceil(window[0] + WINDOW_SECONDS - now) if window else 0
        return _header_values(self._limit, max(self._capacity - len(window), 0), reset)

    def _window(self, client_id: str, now: float) -> deque[float]:
        window = self._admitted.setdefault(client_id, deque())
        while window and window[0] <= now - WINDOW_SECONDS:
            window.popleft()
        return window


def _header_values(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset),
    }
