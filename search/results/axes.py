"""Axis formatting shared by export's pareto.png and the report (no import of either)."""
from __future__ import annotations

from typing import Any


def log_x_axis(ax: Any, xs: list[float]) -> None:
    """A log x axis with plain-number labels that never overlap: one tick per decade over more than two decades,
    1-2-5 ticks per decade over one or two, else at most 5 evenly spaced round numbers; minor ticks unlabelled
    (matplotlib's default labels them ``3×10⁰``, ``4×10⁰``..., which run into each other on a short span)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    positive = [v for v in xs if v and v > 0]
    span = max(positive) / min(positive) if positive else 1.0
    wide = span >= 10
    major = LogLocator(base=10, subs=(1.0,) if span > 100 else (1.0, 2.0, 5.0)) if wide else MaxNLocator(nbins=5)
    ax.xaxis.set_major_locator(major)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs="auto") if wide else NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
