"""Charts drawn on the server as SVG geometry: the templates draw the lines, this module
only scales numbers into a box. No JavaScript, nothing from the internet."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]


def sparkline(values: Sequence[float], *, width: int = 120, height: int = 24) -> str:
    """The points attribute of a polyline drawing ``values`` left to right in the box."""
    if not values:
        return ""
    top = max(max(values), 1)
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(values))


@dataclass(frozen=True)
class Line:
    label: str
    color: str
    points: str          # a polyline's points, in the chart's box
    last: float | None


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lines: list[Line]
    y_min: float
    y_max: float
    x_max: float


def chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, width: int = 640,
          height: int = 240) -> Chart | None:
    """Several (label, [(step, value), ...]) series overlaid on one pair of axes; None when
    there is nothing finite to draw."""
    finite = [(label, [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]) for label, points in series]
    every = [p for _, points in finite for p in points]
    if not every:
        return None
    x_lo, x_hi = min(x for x, _ in every), max(x for x, _ in every)
    y_lo, y_hi = min(y for _, y in every), max(y for _, y in every)
    x_span, y_span = (x_hi - x_lo) or 1, (y_hi - y_lo) or 1

    def at(x: float, y: float) -> str:
        return f"{(x - x_lo) / x_span * (width - 2) + 1:.1f},{height - 1 - (y - y_lo) / y_span * (height - 2):.1f}"

    lines = [Line(label, PALETTE[i % len(PALETTE)], " ".join(at(x, y) for x, y in points),
                  points[-1][1] if points else None)
             for i, (label, points) in enumerate(finite)]
    return Chart(width, height, lines, y_lo, y_hi, x_hi)
