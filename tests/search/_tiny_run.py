"""A tiny real search (embedded Ray, Optuna + SQLite, digits, 2 proxy epochs) made once per test session and
shared by tests/search/test_report.py and test_compare.py; tests copy it before writing into it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

CONFIG = {
    "name": "tiny",
    "data": {"name": "digits", "val_fraction": 0.2},
    "space": {"strides": [1, 2, 2], "base_widths": [16, 32, 64], "width_mult": [0.25, 0.5], "depth": [1],
              "order": ["pre", "post"]},
    "objectives": ["val_acc", "macs", "latency_ms"],
    "proxy": {"epochs": 2, "batch_size": 32, "lr": 0.1},
    # the export's re-measure session: on in the shared tiny run (tiny_run) and test_e2e, off elsewhere
    "latency": {"batch_sizes": [1], "warmup": 1, "repeats": 3, "remeasure_front": False},
    "search": {"sampler": "random", "n_trials": 4, "max_concurrent": 2, "seed": 0},
}


ROOT = Path(__file__).resolve().parents[2]


def run_search(cfg: dict, base: Path, *, prefix: str = "nas") -> tuple[Path, subprocess.CompletedProcess]:
    """Run ``nas search`` on ``cfg`` in a subprocess (its own short Ray temp dir, the repo on the driver's and its
    workers' ``PYTHONPATH`` so a test plugin imports); assert it exits 0; return the run folder and the process."""
    ray_tmp = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: Ray's socket paths are length-limited
    cfg = {**cfg, "ray": {**cfg.get("ray", {}), "temp_dir": ray_tmp}}
    (base / f"{cfg['name']}.yaml").write_text(yaml.safe_dump(cfg))
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    try:
        proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(base / f"{cfg['name']}.yaml"),
                               "--results", str(base / "results")], cwd=base, env=env, capture_output=True,
                              text=True, timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, f"search failed:\n{proc.stdout}\n{proc.stderr}"
    return base / "results" / cfg["name"], proc


def tiny_run(base: Path) -> Path:
    """``base/results/tiny``: a finished 4-trial run (created on the first call, reused afterwards)."""
    run = base / "results" / "tiny"
    if (run / "summary.json").is_file():
        return run
    ray_tmp = tempfile.mkdtemp(prefix="nasrep", dir="/tmp")  # short: Ray's socket paths are length-limited
    try:
        # a private latency gate: measurements wait only for this run's trials, not for other searches on the box
        cfg = {**CONFIG, "ray": {"num_cpus": 2, "temp_dir": ray_tmp},
               "latency": {**CONFIG["latency"], "lock_dir": str(base / "locks"), "remeasure_front": True}}
        (base / "tiny.yaml").write_text(yaml.safe_dump(cfg))
        proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(base / "tiny.yaml"), "--results",
                               str(base / "results")], cwd=base, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"tiny search failed:\n{proc.stdout}\n{proc.stderr}"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return run


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a run folder (storage included) that a test may write into; ``run.json`` points at the copy."""
    out = dest / run.name
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("ray"))
    return out
