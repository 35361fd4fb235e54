"""BB2's own X-RateLimit-* headers: a per-access-token throttle on FHIR views only.

DRF's TokenRateThrottle (apps/dot_ext/throttling.py) counts each access token's requests in
a sliding window, at the rate of the TOKEN_THROTTLE_RATE setting, 100000/s by default
(hhs_oauth_server/settings). ThrottleMiddleware copies its numbers onto every response: on
answers the throttle never saw (other views, or a FHIR call refused by authentication or a
permission) they are the text `None`. Reset is a float. They say nothing about the per-app
budget the edge enforces (FACTS "Errors and limits").
"""

from collections import deque

TOKEN_RATE = 100_000
_WINDOW_SECONDS = 1.0
_NAMES = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
UNTHROTTLED = dict.fromkeys(_NAMES, "None")


class TokenThrottle:
    """The request history of each access token in the last second."""

    def __init__(self) -> None:
        self._history: dict[str, deque[float]] = {}

    def headers(self, token: str, now: float) -> dict[str, str]:
        """Count a FHIR request that passed the permission checks; its headers."""
        history = self._history.setdefault(token, deque())
        while history and history[0] <= now - _WINDOW_SECONDS:
            history.popleft()
        history.append(now)
        reset = _WINDOW_SECONDS - (now - history[0])
        values = (str(TOKEN_RATE), str(TOKEN_RATE - len(history)), str(reset))
        return dict(zip(_NAMES, values, strict=True))
