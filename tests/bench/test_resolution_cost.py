"""bench/resolution_cost.py: both sizes are timed the same number of alternating steps; the MACs column follows the
pixel count (a convolutional network's MACs scale with the feature-map area); bad options stop with exit 2."""
from __future__ import annotations

import pytest

from ._load import load_bench


def test_steps_alternate_and_macs_follow_the_area(capsys):
    bench = load_bench("resolution_cost")
    t = bench.step_times("wrn-10-1", (8, 16), batch=4, steps=3)
    assert sorted(t) == [8, 16] and all(len(v) == 3 and min(v) > 0 for v in t.values())
    assert bench.main(["--presets", "wrn-10-1", "--sizes", "8,16", "--batch", "4", "--steps", "1"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("wrn-10-1"))
    macs_ratio = float(row.split()[-1])
    assert macs_ratio == pytest.approx(4.0, abs=0.02)  # (16/8)² on every conv; the 64→10 head is the same


@pytest.mark.parametrize("argv, message", [(["--sizes", "32,16"], "--sizes: need 4 <= small < large"),
                                           (["--sizes", "16"], "--sizes: two integers"),
                                           (["--steps", "0"], "--steps and --batch")])
def test_bad_options_exit_2(argv, message, capsys):
    bench = load_bench("resolution_cost")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--presets", "wrn-10-1", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err
