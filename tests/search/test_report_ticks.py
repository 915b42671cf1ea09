"""Log-axis tick labels of the PNG plots are plain numbers whose boxes do not overlap, on short and wide spans."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from search.results.axes import log_x_axis


@pytest.mark.parametrize("xs", [[3.1, 3.4, 3.9, 4.2], [2.5, 9.0], [0.05, 3.0, 40.0, 900.0]], ids=str)
def test_log_ticks_are_readable(xs):
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter(xs, [0.5] * len(xs))
    log_x_axis(ax, xs)
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
             if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi]
    texts = [t.label1.get_text() for t in ticks]
    assert len(texts) >= 2 and not any("times" in s or "×" in s or "^" in s for s in texts), texts
    assert all(float(s) == pytest.approx(t.get_loc(), rel=1e-9) for s, t in zip(texts, ticks))
    boxes = sorted((t.label1.get_window_extent() for t in ticks), key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), texts
    plt.close(fig)
