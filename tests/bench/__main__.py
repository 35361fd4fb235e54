"""``make bench`` / ``make bench-more``: run the benches one after the other, each in its own
process, printing each one's time and the total.

``make bench`` runs what issue 16's "Done when" names (about 20 minutes): replicas started
with the work, the adaptive rate under an edge at 5/s (bare 429s and ``Retry-After``), the
5,000-claim beneficiary, the store path (plain and partitioned) and a webhook backlog
draining while syncs run. ``make bench-more``
runs the rest: replicas started before the work, the lanes and the connect storm.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from tests.bench.common import load

BENCH: tuple[tuple[str, ...], ...] = (
    ("tests.bench.budget", "--scenario", "with-work"),
    ("tests.bench.adaptive",),
    ("tests.bench.size",),
    ("tests.bench.store",),
    ("tests.bench.webhooks",),
)
MORE: tuple[tuple[str, ...], ...] = (
    ("tests.bench.budget", "--scenario", "before-work"),
    ("tests.bench.lanes",),
    ("tests.bench.storm",),
)


def main(more: bool) -> int:
    """Run the benches; the first one to fail stops the rest (its exit status is returned)."""
    began = time.monotonic()
    for module, *args in MORE if more else BENCH:
        started = time.monotonic()
        print(f"== {module} {' '.join(args)} (load average {load()})", flush=True)
        status = subprocess.run([sys.executable, "-m", module, *args], check=False).returncode
        print(f"== {module}: {time.monotonic() - started:.0f} s", flush=True)
        if status:
            return status
    print(f"== all: {time.monotonic() - began:.0f} s (load average {load()})", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--more", action="store_true", help="the benches not in make bench")
    sys.exit(main(parser.parse_args().more))
