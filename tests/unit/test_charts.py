"""The benches' charts (tests/bench/charts.py) and their replica sampler: the series helpers
compute what the charts claim, and a chart is a real PNG of the agreed size."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from tests.bench.charts import (
    DPI,
    SIZE_INCHES,
    distribution_chart,
    line_chart,
    per_second,
    rate_of,
    since,
)
from tests.bench.sampling import metric_sum, rss_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_per_second_fills_quiet_seconds_with_zero() -> None:
    counts = {"1000": 3, "1003": 5, "1001": 2}
    assert per_second(counts) == [(0, 3.0), (1, 2.0), (2, 0.0), (3, 5.0)]
    assert per_second(counts, origin=998) == [(2, 3.0), (3, 2.0), (4, 0.0), (5, 5.0)]
    assert per_second({}) == []


def test_rate_of_a_counter_treats_a_drop_as_a_restart() -> None:
    samples = [(0.0, 0.0), (1.0, 10.0), (3.0, 20.0), (4.0, 4.0)]
    assert rate_of(samples) == [(1.0, 10.0), (3.0, 5.0), (4.0, 4.0)]
    assert rate_of([(5.0, 1.0)]) == []


def test_rate_of_over_a_window_looks_back_that_far() -> None:
    samples = [(float(t), float(10 * t)) for t in range(6)]
    samples[3] = (3.0, 40.0)  # a burst between 2 and 3, paid back between 3 and 4
    assert rate_of(samples, window=2.0) == [
        (1.0, 10.0),  # nothing 2 s back yet: from the first sample
        (2.0, 10.0),
        (3.0, 15.0),  # (40 - 10) / 2
        (4.0, 10.0),
        (5.0, 5.0),
    ]


def test_since_moves_the_origin() -> None:
    assert since([(100.5, 1.0), (102.0, 2.0)], 100.0) == [(0.5, 1.0), (2.0, 2.0)]


def test_metric_sum_adds_every_label_set_and_skips_created() -> None:
    exposition = (
        "# HELP bbingest_bb2_requests_total Requests.\n"
        "# TYPE bbingest_bb2_requests_total counter\n"
        'bbingest_bb2_requests_total{app="a",endpoint="token",status="200"} 3.0\n'
        'bbingest_bb2_requests_created{app="a",endpoint="token",status="200"} 1.7e9\n'
        'bbingest_bb2_requests_total{app="a",endpoint="Patient",status="429"} 2.0\n'
        "# TYPE bbingest_queue_depth gauge\n"
        'bbingest_queue_depth{queue="arq:queue"} 7.0\n'
    )
    assert metric_sum(exposition, "bbingest_bb2_requests") == 5.0
    assert metric_sum(exposition, "bbingest_queue_depth") == 7.0
    assert metric_sum(exposition, "bbingest_absent") == 0.0
    assert metric_sum(exposition, "bbingest_bb2_requests", {"status": "429"}) == 2.0
    assert metric_sum(exposition, "bbingest_bb2_requests", {"status": "500"}) == 0.0


def test_rss_of_this_process_is_read() -> None:
    # Whatever the exact figure, a Python process with matplotlib loaded holds megabytes.
    assert rss_bytes(os.getpid()) > 10 * 1024 * 1024


@pytest.mark.parametrize("steps", [True, False])
def test_line_chart_writes_a_png_of_the_agreed_size(tmp_path: Path, steps: bool) -> None:
    path = line_chart(
        tmp_path / "deep" / "rate.png",
        "rate",
        {"server": [(0, 9.0), (1, 10.0)], "replica 1": [(0.5, 3.0), (1.5, 4.0)]},
        y_label="requests per second",
        limit=10,
        steps=steps,
    )
    assert png_size(path) == (int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI))


def test_distribution_chart_writes_a_png(tmp_path: Path) -> None:
    path = distribution_chart(
        tmp_path / "ages.png",
        "ages",
        {"storm": [1.0, 2.0, 2.5, 30.0], "storm, killed": [3.0, 4.0]},
        x_label="seconds",
        limit=60,
    )
    assert png_size(path) == (int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI))


def test_the_same_chart_twice_is_the_same_file(tmp_path: Path) -> None:
    series = {"server": [(0.0, 1.0), (1.0, 2.0)]}
    first = line_chart(tmp_path / "a.png", "t", series, y_label="y").read_bytes()
    second = line_chart(tmp_path / "b.png", "t", series, y_label="y").read_bytes()
    assert first == second
