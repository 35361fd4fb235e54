"""CMS-side events an admin switches on: an app made inactive, an edge refusing a
beneficiary's requests, and refreshes that fail after rotating the token.

None of them is the beneficiary's doing (FACTS "Authorization", "Errors and limits").
"""

from collections import deque
from dataclasses import dataclass

# What TokenView answers when the backend lookup after minting fails (BB2
# apps/dot_ext/views/authorization.py, TokenView.post: UpstreamServerException -> 502,
# NotFound or no crosswalk -> 404), as {"status_code", "message"}.
REFRESH_FAULT_MESSAGES = {502: "Failed to retrieve data from data source.", 404: "Not found."}


@dataclass
class EdgeBlock:
    """An edge refusing one beneficiary: until `until` (epoch s) and/or for `left` requests."""

    until: float | None
    left: int | None

    def refuses(self, now: float) -> bool:
        """Whether the block still holds (the first limit reached ends it)."""
        in_time = self.until is None or now < self.until
        in_count = self.left is None or self.left > 0
        return in_time and in_count


class CmsSwitches:
    """The switches, keyed by client id or patient id."""

    def __init__(self) -> None:
        self._inactive: set[str] = set()
        self._edge: dict[str, EdgeBlock] = {}
        self._refresh_faults: deque[int] = deque()

    def set_inactive(self, client_id: str, inactive: bool) -> None:
        """Make an app inactive (as CMS does during a review) or active again."""
        if inactive:
            self._inactive.add(client_id)
        else:
            self._inactive.discard(client_id)

    def inactive(self, client_id: str) -> bool:
        """Whether CMS made this app inactive."""
        return client_id in self._inactive

    def forbid(self, patient_id: str, until: float | None, count: int | None) -> None:
        """Make the edge refuse this beneficiary's FHIR requests (replaces an earlier block)."""
        self._edge[patient_id] = EdgeBlock(until=until, left=count)

    def edge_refuses(self, patient_id: str, now: float) -> bool:
        """Whether the edge refuses this request of the beneficiary; counts it if so."""
        block = self._edge.get(patient_id)
        if block is None:
            return False
        if not block.refuses(now):
            del self._edge[patient_id]
            return False
        if block.left is not None:
            block.left -= 1
        return True

    def order_refresh_faults(self, status: int, count: int) -> int:
        """Make the next `count` refreshes rotate the token and then fail; returns how many
        are pending."""
        self._refresh_faults.extend([status] * count)
        return len(self._refresh_faults)

    def take_refresh_fault(self) -> int | None:
        """The status the current refresh must fail with after minting, if one is pending."""
        return self._refresh_faults.popleft() if self._refresh_faults else None
