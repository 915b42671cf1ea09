"""The seed methods inside a real (one-epoch, digits 8×8) retrain: the lr rule rewrites the config, GradInit
runs before the first epoch, and the ELR columns reach the metrics row and metrics.csv."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from search.methods import MethodsConfig, method_callbacks
from search.retrain import RetrainConfig, retrain
from space.presets import wrn


def test_retrain_with_lr_rule_gradinit_and_elr_log(tmp_path: Path):
    methods = MethodsConfig(gradinit=True, gradinit_iters=3, lr_rule="auto", lr_base_batch=128, elr="log")
    cfg = RetrainConfig(data="digits", image_size=8, epochs=1, batch_size=64, lr=0.2, sched="constant", workers=0,
                        tensorboard=False, log_interval=0)
    lines: list[str] = []
    metrics = retrain(wrn(10, 0.5, input_size=8), cfg, out_dir=tmp_path, out=lines.append,
                      callbacks=method_callbacks(methods))
    assert metrics["config"]["lr"] == pytest.approx(0.1), "linear rule for SGD: 0.2 · 64/128"
    row = metrics["history"][0]
    assert row["gradinit_iters"] == 3 and 0.01 <= row["gradinit_alpha_min"] <= row["gradinit_alpha_max"]
    assert any(line.startswith("gradinit: 3 iterations") for line in lines)
    assert row["elr"] == pytest.approx(row["lr"] / row["si_norm"] ** 2, rel=1e-6) and row["lr"] == pytest.approx(0.1)
    assert sum(k.startswith("elr/") for k in row) == 4  # pre-act WRN-10: the stem and each block's conv1
    with open(tmp_path / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert "elr" in header and "gradinit_alpha_max" in header
