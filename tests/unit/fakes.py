"""In-memory doubles for unit tests of the HTTP layer (integration tests use real Redis)."""

from __future__ import annotations


class RecordingBudget:
    """Grants every request at once and records pauses, so tests never sleep."""

    def __init__(self) -> None:
        self.acquired = 0
        self.pauses: list[float] = []
        self.slowdowns = 0
        self.current_rate = 10.0

    async def acquire(self) -> float:
        self.acquired += 1
        return 0.0

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)

    async def slow_down(self, retry_after: float | None = None) -> None:
        self.slowdowns += 1
        if retry_after is not None:
            self.pauses.append(retry_after)


class RecordingSleep:
    """Stands in for asyncio.sleep and remembers the delays asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
