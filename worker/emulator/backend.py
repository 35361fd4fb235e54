"""What a search page costs CMS's backend (BFD), when the emulator is told to model it.

FACTS.md "Errors and limits": the backend builds a beneficiary's whole result and then
slices out the page, so every page costs about as much as all of the beneficiary's claims
matching the search; the backend gives up after 30 s, and BB2 answers 502. Modelled as
``PAGE_SECONDS + CLAIM_SECONDS`` per matching claim (paging through n claims 50 at a time
costs about n²/100 ms in all). Page size does not help; narrower searches (``type=``,
``service-date``, ``_lastUpdated``) do.
"""

from typing import Final

PAGE_SECONDS: Final = 0.020
CLAIM_SECONDS: Final = 0.0005
TIMEOUT_SECONDS: Final = 30.0


def page_cost(matching: int) -> float:
    """Seconds the backend spends on one page of a search matching ``matching`` claims."""
    return PAGE_SECONDS + CLAIM_SECONDS * matching


def times_out(cost: float) -> bool:
    """Whether a page of this cost meets the backend's timeout (a 502 at BB2)."""
    return cost > TIMEOUT_SECONDS
