"""bench/orchestration.py, tiny (12 trials): every side runs, the search evaluates 12 distinct architectures,
and each row's overhead is its wall time less the measured work, as the printed numbers show."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from evaluators.nb201_table import MISSING, PACKAGE

from ._load import ROOT


@pytest.mark.skipif(importlib.util.find_spec(PACKAGE) is None, reason=MISSING)
def test_tiny_orchestration_bench(cifar_dir, tmp_path):
    env = {**os.environ, "NAS_DATA_DIR": str(cifar_dir)}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "orchestration.py"), "--trials", "12"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    head = re.search(r"(\d+) complete; Σ trial work ([\d.]+) s", out)
    assert head and int(head.group(1)) == 12, out
    work = float(head.group(2))
    rows = {name.strip(): (float(wall), float(over)) for name, wall, over in
            re.findall(r"^(plain Optuna, default SQLite|plain Optuna, our storage \(WAL\)|bare Ray Tune, 2 at a time|"
                       r"nas search, 2 at a time)\s+([\d.]+)\s+(-?[\d.]+)$", out, re.M)}
    assert len(rows) == 4, out
    for name, (wall, over) in rows.items():
        done = 0.0 if name.startswith("bare") else work / (2 if name.startswith("nas") else 1)
        assert over == pytest.approx((wall - done) / 12 * 1000, abs=1.0), name  # inputs printed to 0.01 s
