"""bench/overhead.py, tiny (3 distinct architectures, 1 epoch): the search evaluates exactly the plain loop's
architectures, the printed ratios are the printed wall times over Σ work, and the breakdown (trial spans from the
storage's timestamps, the rest between trials) adds up to the search's wall time."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ._load import ROOT


def test_tiny_overhead_bench(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "overhead.py"), "--trials", "3", "--epochs", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"architectures: 3 .* complete: 3$", out, re.M), out
    work = float(re.search(r"Σ trial work\s+([\d.]+) s", out).group(1))
    before, after = map(float, re.search(r"before the search, ([\d.]+) s, and one after, ([\d.]+) s", out).groups())
    assert work == pytest.approx((before + after) / 2, abs=0.011)
    fit, ratio = map(float, re.search(r"tune.fit wall\s+([\d.]+) s\s+ratio\s+([\d.]+)", out).groups())
    assert ratio == pytest.approx(fit / work, rel=0.01)  # inputs printed to 0.01 s
    first, first_work, others, others_work, between = map(float, re.search(
        r"first trial ([\d.]+) s against its work ([\d.]+) s .* the other 2 ([\d.]+) s against ([\d.]+) s .* "
        r"between trials (-?[\d.]+) s", out).groups())
    assert first + others + between == pytest.approx(fit, abs=0.03)
    assert first_work + others_work == pytest.approx(work, abs=0.02)
    assert first > first_work  # the first trial also waits for its process to start
