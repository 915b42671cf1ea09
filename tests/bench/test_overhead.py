"""bench/overhead.py, tiny (3 distinct architectures, 1 epoch, 2 repeats): the search evaluates exactly the plain
loop's architectures, every printed ratio is its printed wall time over that repeat's Σ work (the mean of the plain
passes around it, each pass shared by its neighbours), the breakdown (trial spans from the storage's timestamps,
the rest between trials) adds up to the search's wall time, and the last line is the median of the repeats."""
from __future__ import annotations

import re
import statistics
import subprocess
import sys

import pytest

from ._load import ROOT


def test_tiny_overhead_bench(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "overhead.py"), "--trials", "3", "--epochs", "1",
                           "--repeats", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"architectures: 3 .* repeats: 2$", out, re.M), out
    repeats = out.split("-- repeat ")[1:]
    assert len(repeats) == 2 and all("every search completed all 3 architectures" in r for r in repeats), out
    ratios, bares, passes = [], [], []
    for block in repeats:
        work = float(re.search(r"Σ trial work\s+([\d.]+) s", block).group(1))
        before, after = map(float, re.search(r"before the searches, ([\d.]+) s, and one after, ([\d.]+) s",
                                             block).groups())
        passes.append((before, after))
        assert work == pytest.approx((before + after) / 2, abs=0.011)
        fit, ratio = map(float, re.search(r"nas search   tune.fit wall\s+([\d.]+) s\s+ratio\s+([\d.]+)",
                                          block).groups())
        assert ratio == pytest.approx(fit / work, rel=0.01)  # inputs printed to 0.01 s
        bare_fit, bare_ratio = map(float, re.search(r"bare Ray Tune tune.fit wall\s+([\d.]+) s\s+ratio\s+([\d.]+)",
                                                    block).groups())
        assert bare_ratio == pytest.approx(bare_fit / work, rel=0.01)
        first, first_work, others, others_work, between = map(float, re.search(
            r"first trial ([\d.]+) s against its work ([\d.]+) s .* the other 2 ([\d.]+) s against ([\d.]+) s .* "
            r"between trials (-?[\d.]+) s", block).groups())
        assert first + others + between == pytest.approx(fit, abs=0.03)
        assert first_work + others_work == pytest.approx(work, abs=0.02)
        assert first > first_work  # the first trial also waits for its process to start
        ratios.append(ratio)
        bares.append(bare_ratio)
    assert passes[0][1] == passes[1][0]  # the pass between the repeats serves both
    median, listed, bare_median, bare_listed = re.search(
        r"median of 2: nas search ratio ([\d.]+) \(([\d., ]+)\); .* bare Ray Tune ([\d.]+) \(([\d., ]+)\)",
        out).groups()
    assert [float(x) for x in listed.split(", ")] == ratios and [float(x) for x in bare_listed.split(", ")] == bares
    # the median of two is their mean; each printed ratio is rounded to 0.01
    assert float(median) == pytest.approx(statistics.median(ratios), abs=0.011)
    assert float(bare_median) == pytest.approx(statistics.median(bares), abs=0.011)


def test_bad_option_stops_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "overhead.py"), "--repeats", "0"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "argument --repeats: must be an integer ≥ 1, got '0'" in proc.stderr
    assert proc.stdout == ""  # nothing was evaluated
