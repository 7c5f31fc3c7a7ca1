"""Small bar charts as SVG geometry computed on the server (no chart library, no script):
the template draws the rectangles and the line this module places."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 720
HEIGHT = 220
MARGIN_LEFT = 40
MARGIN_BOTTOM = 40
MARGIN_TOP = 12


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str]]
    line: str
    """SVG polyline points of the fraction series (0..1 over the plot height); may be empty."""
    top: int
    baseline: float


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[int]]],
    fraction: Sequence[float | None] = (),
) -> Chart:
    """Grouped bars, one group per label; ``series`` are (name, css class, values).
    ``fraction`` (0..1, e.g. the service level) is drawn as a line over the full height."""
    plot_height = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    plot_width = WIDTH - MARGIN_LEFT - 8
    top = max([1, *(v for _, _, values in series for v in values)])
    group = plot_width / max(1, len(labels))
    bar_width = max(1.0, group * 0.8 / max(1, len(series)))
    baseline = HEIGHT - MARGIN_BOTTOM
    bars = []
    for i, label in enumerate(labels):
        for j, (name, css, values) in enumerate(series):
            height = plot_height * values[i] / top
            x = MARGIN_LEFT + i * group + group * 0.1 + j * bar_width
            bars.append(Bar(round(x, 1), round(baseline - height, 1), round(bar_width, 1),
                            round(height, 1), css, f"{label} {name}: {values[i]}"))  # fmt: skip
    points = [
        f"{MARGIN_LEFT + (i + 0.5) * group:.1f},{baseline - plot_height * value:.1f}"
        for i, value in enumerate(fraction)
        if value is not None
    ]
    step = max(1, len(labels) // 12)
    placed = [
        (round(MARGIN_LEFT + (i + 0.5) * group, 1), label)
        for i, label in enumerate(labels)
        if i % step == 0
    ]
    return Chart(WIDTH, HEIGHT, bars, placed, " ".join(points), top, baseline)
