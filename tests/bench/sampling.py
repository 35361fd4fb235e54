"""Sample a metric of each worker replica's ``/metrics`` over a bench run.

The emulator counts requests per second for everyone at once; which replica sent them is known
only to the replicas. Each replica counts its own in ``bbingest_bb2_requests_total`` (when the
answer arrives, so within a request's latency of its arrival at the server): sampling that
counter once a second gives each replica's rate (``charts.rate_of``). The same sampler reads a
gauge (an app's current budget rate, say) as a level over time.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.bench.charts import Point

REQUESTS_METRIC = "bbingest_bb2_requests"  # the parser names a counter's family without _total


def free_port_range(count: int) -> int:
    """A first port such that it and the ``count - 1`` ports after it are free now."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first: int = probe.getsockname()[1]
        if first + count <= 65535 and all(_free(first + i) for i in range(1, count)):
            return first


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def metric_sum(exposition: str, family: str, match: Mapping[str, str] | None = None) -> float:
    """The sum of the samples of ``family`` in a Prometheus text exposition whose labels
    include ``match`` (all of them by default): the samples named ``family`` (a gauge) or
    ``family_total`` (a counter); a counter's ``_created`` samples are timestamps, not counts,
    and are left out."""
    names = {family, family + "_total"}
    wanted = (match or {}).items()
    return sum(
        sample.value
        for metric in text_string_to_metric_families(exposition)
        for sample in metric.samples
        if sample.name in names and wanted <= sample.labels.items()
    )


def rss_bytes(pid: int) -> float:
    """The resident memory of a process now (Linux: VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) * 1024  # reported in kB
    raise LookupError(f"no VmRSS for process {pid}")


@dataclass
class ReplicaSampler:
    """Polls ``family`` (its samples matching ``match``, summed) on each replica's metrics
    port every ``interval`` seconds while running; ``samples[i]`` holds replica i's (epoch
    time, value) points. A replica that does not answer (still starting, or killed) is
    skipped for that round.

    E.g. the 429s each replica met: ``ReplicaSampler(ports, match={"status": "429"})``, then
    ``charts.rate_of``; an app's budget rate (a gauge): ``family="bbingest_budget_rate"``.
    """

    ports: Sequence[int]
    family: str = REQUESTS_METRIC
    match: Mapping[str, str] | None = None
    interval: float = 1.0
    samples: list[list[Point]] = field(default_factory=list)

    async def run(self) -> None:
        """Sample until cancelled."""
        self.samples = [[] for _ in self.ports]
        async with httpx.AsyncClient(timeout=self.interval) as http:
            while True:
                started = time.monotonic()
                for index, port in enumerate(self.ports):
                    try:
                        response = await http.get(f"http://127.0.0.1:{port}/metrics")
                    except httpx.TransportError:
                        continue
                    value = metric_sum(response.text, self.family, self.match)
                    self.samples[index].append((time.time(), value))
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
