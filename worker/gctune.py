"""Garbage-collector settings for a worker process, chosen by measurement.

Storing a page parses about 200 KB of FHIR JSON into some ten thousand dicts and lists. With
CPython's default thresholds (a young collection every 700 new containers) that triggers a
dozen collections a page, which find nothing: parsed JSON holds no reference cycles and is
freed by reference counting. `python -m tests.bench.store` measured parse and hash at
0.27 ms of CPU an EOB with the defaults and 0.13 ms with young collections every 10,000
containers, the same as with the collector off. The older generations keep their default
ratios, so real cycles (exceptions, asyncio internals) are still collected.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 10_000


def tune_gc() -> None:
    """Collect the young generation every ``YOUNG_THRESHOLD`` new containers."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
