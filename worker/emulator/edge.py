"""The edge in front of BB2: a per-app throttle whose limit nobody announces.

FACTS.md "Errors and limits": the limit that bites is at the edge in front of BB2, about
10 requests/s per app, answered with a 429 whose body is "Assembly Rate Limit exceeded";
its exact accounting and whether it sends ``Retry-After`` are not public. So the edge here
counts every request of an app to the host (token or not) in a sliding second, at a rate
set on the command line (``--edge-rate``) or at run time (``POST /_emulator/edge/rate``),
and answers its 429 bare or with ``Retry-After`` as told. It sits in front of the app
limits (``--rate-limit``), which model what an app is registered for.
"""

from starlette.responses import PlainTextResponse, Response

from worker.emulator.stats import SlidingWindow

EDGE_REFUSAL = "Assembly Rate Limit exceeded"


class EdgeThrottle:
    """Admits at most ``rate`` requests per client id in any 1-second window (None: all)."""

    def __init__(self, rate: int | None, retry_after: bool) -> None:
        self.rate = rate
        self.retry_after = retry_after
        self._window = SlidingWindow(rate, 0)

    def configure(self, rate: int | None, retry_after: bool) -> None:
        """Change the edge's rate and the form of its 429s from now on."""
        self.rate, self.retry_after = rate, retry_after
        self._window = SlidingWindow(rate, 0)

    def admit(self, client_id: str, now: float) -> int | None:
        """None when the request passes, else the seconds until the app's window has room."""
        return self._window.admit(client_id, now)

    def refusal(self, wait: int) -> Response:
        """The edge's 429: its own text body, with ``Retry-After`` only when so configured."""
        headers = {"Retry-After": str(wait)} if self.retry_after else None
        return PlainTextResponse(EDGE_REFUSAL, status_code=429, headers=headers)
