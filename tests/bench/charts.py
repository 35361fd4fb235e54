"""The benches' pictures: time series and distributions written as PNG files into ``bench/``.

The one interface every bench calls (the adaptive-budget and large-sync benches too)::

    line_chart(path, title, {name: [(t, value), ...]}, y_label=..., limit=..., limit_label=...)
    distribution_chart(path, title, {name: [value, ...]}, x_label=..., limit=..., limit_label=...)

plus pure helpers that turn raw observations into series: ``per_second`` (counts per epoch
second, such as the emulator's ``by_second``), ``rate_of`` (a cumulative counter sampled over
time, such as a replica's ``bbingest_bb2_requests_total``) and ``since`` (shift to t = 0).

Drawing uses matplotlib's Agg canvas on a ``Figure`` of its own (never ``pyplot``): no display,
no global state shared between charts, the same bytes on a server as on a laptop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"  # committed; the README shows them
# Small files that read well embedded in the README on GitHub (800 x 450 px).
SIZE_INCHES = (8.0, 4.5)
DPI = 100

Point = tuple[float, float]
Series = Sequence[Point]


def per_second(
    counts: Mapping[str, int] | Mapping[int, int], origin: float | None = None
) -> list[Point]:
    """Counts per whole second (epoch seconds as keys, as the emulator's ``by_second``) as a
    series of (seconds since ``origin``, count); ``origin`` defaults to the first second.

    Seconds with nothing counted read 0 (a gap is a real pause, not missing data).
    """
    if not counts:
        return []
    seconds = {int(second): count for second, count in counts.items()}
    start, end = min(seconds), max(seconds)
    zero = start if origin is None else origin
    return [(s - zero, float(seconds.get(s, 0))) for s in range(start, end + 1)]


def since(series: Series, origin: float) -> list[Point]:
    """The series with ``origin`` (an epoch time, say) as t = 0."""
    return [(t - origin, value) for t, value in series]


def rate_of(samples: Series, window: float = 0.0) -> list[Point]:
    """The per-second rate of a cumulative counter sampled at (t, value): at each sample, the
    increase since the latest sample at least ``window`` seconds earlier (by default the one
    before), over the time between them, as Prometheus's ``rate()`` looks back over a range.

    A counter that went down (a process restarted) restarts from zero, as ``rate()`` treats a
    reset.
    """
    rates = []
    start = 0
    for end in range(1, len(samples)):
        t1, v1 = samples[end]
        while start + 1 < end and samples[start + 1][0] <= t1 - window:
            start += 1
        t0, v0 = samples[start]
        if t1 > t0:
            increase = v1 - v0 if v1 >= v0 else v1
            rates.append((t1, increase / (t1 - t0)))
    return rates


def line_chart(
    path: Path,
    title: str,
    series: Mapping[str, Series],
    *,
    x_label: str = "time (s)",
    y_label: str,
    limit: float | None = None,
    limit_label: str = "limit",
    steps: bool = True,
) -> Path:
    """Draw one line per named series of (t, value) points, plus an optional horizontal
    ``limit`` line (dashed, red), and write the PNG to ``path`` (directories created).

    ``steps`` draws each value as holding until the next point (right for counts per second);
    False joins the points (right for a sampled level such as memory or a rate setting).
    Returns ``path``.
    """
    figure, axes = _figure(title)
    for name, points in series.items():
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if steps:
            axes.step(xs, ys, where="post", label=name, linewidth=1.2)
        else:
            axes.plot(xs, ys, label=name, linewidth=1.2)
    if limit is not None:
        axes.axhline(limit, color="tab:red", linestyle="--", linewidth=1.2, label=limit_label)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    highest = max([*(p[1] for points in series.values() for p in points), limit or 0.0, 1.0])
    axes.set_ylim(0, highest * 1.1)
    # Below the axes: a legend inside would hide the lines near the limit.
    figure.legend(loc="outside lower center", ncols=min(3, len(series) + (limit is not None)))
    return _save(figure, path)


def distribution_chart(
    path: Path,
    title: str,
    samples: Mapping[str, Sequence[float]],
    *,
    x_label: str,
    bins: int = 30,
    limit: float | None = None,
    limit_label: str = "limit",
) -> Path:
    """Draw, for each named set of values, its histogram (outlined, left axis: count) and its
    cumulative share (CDF, right axis), plus an optional vertical ``limit`` line, and write the
    PNG to ``path``. Every set shares the same bins. Returns ``path``."""
    figure, axes = _figure(title)
    every = [v for values in samples.values() for v in values]
    low, high = min([0.0, *every]), max([*every, limit or 0.0, 1.0])
    edges = [low + (high - low) * i / bins for i in range(bins + 1)]
    share = axes.twinx()
    for index, (name, values) in enumerate(samples.items()):
        color = f"C{index}"
        axes.hist(values, bins=edges, histtype="step", color=color, label=f"{name}: count")
        ordered = sorted(values)
        cumulative = [(i + 1) / len(ordered) for i in range(len(ordered))]
        share.plot(ordered, cumulative, color=color, linestyle=":", label=f"{name}: share")
    axes.set_xlabel(x_label)
    axes.set_ylabel("count")
    share.set_ylabel("cumulative share")
    share.set_ylim(0, 1.02)
    if limit is not None:
        axes.axvline(limit, color="tab:red", linestyle="--", linewidth=1.2, label=limit_label)
    handles, labels = axes.get_legend_handles_labels()
    more_handles, more_labels = share.get_legend_handles_labels()
    figure.legend(handles + more_handles, labels + more_labels, loc="outside lower center", ncols=3)
    return _save(figure, path)


def _figure(title: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No "Software" stamp: a re-run with the same figures writes the same bytes.
    figure.savefig(path, format="png", metadata={"Software": None})
    return path
