"""The seed methods wired into real (one- or two-epoch, digits 8×8) training runs.

Retraining: the lr rule rewrites the config, GradInit runs before the first epoch, the ELR columns reach
the metrics row and metrics.csv, ``--elr fixed`` keeps the scale-invariant weights on their sphere with no
weight decay, and all of it comes from ``RetrainConfig``/``nas retrain`` flags and resumes exactly.
Proxy training: the same options in the search config's ``proxy`` section reach ``AccuracyEvaluator``
through ``ArchEvaluation`` (lr scaled once, GradInit statistics and ELR in the reports).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from evaluators import AccuracyEvaluator
from search.config import ConfigError, parse_config
from search.evaluation import ArchEvaluation
from space import Head, build_model
from space.presets import wrn
from train import load_dataset
from train.methods import MethodsConfig
from train.methods import MethodsConfig as ProxyMethods
from train.retrain import Callback, RetrainConfig, param_groups, retrain
from train.retrain.methods import method_callbacks
from train.retrain.parts import merge_claims

ARCH = wrn(10, 0.5, input_size=8)
TIMING = {"seconds", "images_per_s", "gradinit_seconds"}
SI_PARAMS = ["stem.0.weight", "stages.0.0.conv1.weight", "stages.1.0.conv1.weight", "stages.2.0.conv1.weight"]


def quiet(_: str) -> None:
    pass


def si_norm(state: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(state[n].double().pow(2).sum()) for n in SI_PARAMS))


# --------------------------------------------------------------------------- retrain


def test_retrain_with_lr_rule_gradinit_and_elr_log(tmp_path: Path):
    methods = MethodsConfig(gradinit=True, gradinit_iters=3, lr_rule="auto", lr_base_batch=128, elr="log")
    cfg = RetrainConfig(data="digits", image_size=8, epochs=1, batch_size=64, lr=0.2, sched="constant", workers=0,
                        tensorboard=False, log_interval=0)
    lines: list[str] = []
    metrics = retrain(ARCH, cfg, out_dir=tmp_path, out=lines.append, callbacks=method_callbacks(methods))
    assert metrics["config"]["lr"] == pytest.approx(0.1), "linear rule for SGD: 0.2 · 64/128"
    row = metrics["history"][0]
    assert row["gradinit_iters"] == 3 and 0.01 <= row["gradinit_alpha_min"] <= row["gradinit_alpha_max"]
    assert any(line.startswith("gradinit: 3 iterations") for line in lines)
    # Nesterov SGD, momentum 0.9: the steady-state step is lr/(1 − μ) per unit gradient
    assert row["elr"] == pytest.approx(row["lr"] / (1 - 0.9) / row["si_norm"] ** 2, rel=1e-6)
    assert row["lr"] == pytest.approx(0.1)
    assert sum(k.startswith("elr/") for k in row) == 4  # pre-act WRN-10: the stem and each block's conv1
    with open(tmp_path / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert "elr" in header and "gradinit_alpha_max" in header


def test_cli_retrain_fixed_elr_lr_rule_and_gradinit(tmp_path: Path, capsys):
    from search.cli import main

    arch_path = tmp_path / "arch.yaml"
    arch_path.write_text(ARCH.to_yaml())
    out = tmp_path / "run"
    args = ["retrain", str(arch_path), "--data", "digits", "--image-size", "8", "--epochs", "1", "-b", "32",
            "--lr", "0.2", "--sched", "constant", "--weight-decay", "0.01", "--threads", "1", "--log-interval", "0",
            "--no-tensorboard", "--gradinit", "--gradinit-iters", "3", "--lr-rule", "auto", "--lr-base-batch",
            "128", "--elr", "fixed", "--elr-radius", "2.5", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "gradinit: 3 iterations" in printed and "elr: 4 scale-invariant weight tensors, sphere radius 2.5" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = metrics["config"]
    methods = cfg["methods"]
    assert cfg["lr"] == pytest.approx(0.05) and methods["lr_rule"] == "auto", "linear rule: 0.2 · 32/128"
    assert (methods["gradinit"], methods["gradinit_iters"], methods["elr"], methods["elr_radius"]) == \
        (True, 3, "fixed", 2.5)
    row = metrics["history"][0]
    assert row["gradinit_iters"] == 3 and row["lr"] == pytest.approx(0.05)
    assert row["si_norm"] == pytest.approx(2.5, rel=1e-5)
    assert row["elr"] == pytest.approx(0.05 / (1 - 0.9) / 2.5 ** 2, rel=1e-5)  # Nesterov momentum 0.9
    weights = torch.load(out / "model.pt", weights_only=True)
    assert si_norm(weights) == pytest.approx(2.5, rel=1e-5)
    # the rest of the weights trained with decay: not on any sphere, and the SI weights did move
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    decays = sorted({g["weight_decay"] for g in ckpt["optimizer"]["param_groups"]})
    assert decays == [0.0, 0.01]
    assert ckpt["callbacks"][2] == {"radius": 2.5}  # lr rule, GradInit, ELR: in order


def test_fixed_elr_gradinit_and_lr_rule_resume_bit_identical(tmp_path: Path):
    class StopAt(Callback):
        def on_epoch_start(self, ctx) -> None:
            if ctx.epoch == 1:
                raise KeyboardInterrupt

    arch = ARCH.replace(head=Head(dropout=0.3))  # dropout: SI detection on resume must not draw from the RNG
    cfg = RetrainConfig(data="digits", image_size=8, epochs=2, batch_size=64, lr=0.2, workers=0, tensorboard=False,
                        log_interval=0, methods=MethodsConfig(gradinit=True, gradinit_iters=2, lr_rule="linear",
                                                              elr="fixed"))
    straight = retrain(arch, cfg, out_dir=tmp_path / "a", out=quiet)
    with pytest.raises(KeyboardInterrupt):
        retrain(arch, cfg, out_dir=tmp_path / "b", out=quiet, callbacks=[StopAt()])
    resumed = retrain(arch, cfg, out_dir=tmp_path / "b", resume=True, out=quiet)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(resumed["history"]) == strip(straight["history"])
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    radius = straight["history"][0]["si_norm"]
    assert straight["history"][1]["si_norm"] == pytest.approx(radius, rel=1e-5) and "gradinit_iters" not in \
        straight["history"][1]


def test_fixed_elr_claims_keep_module_lr_scale_and_drop_decay():
    torch.manual_seed(0)
    model = build_model(ARCH, num_classes=10, in_chans=1)
    claims = method_callbacks(MethodsConfig(elr="fixed"))[0].param_claims(model, torch.zeros(2, 1, 8, 8))
    groups = param_groups(model, weight_decay=5e-4, extra_claims=claims)
    si = {id(p) for n, p in model.named_parameters() if n in SI_PARAMS}
    assert si == {id(p) for p in claims[0]["params"]}
    for g in groups:
        if any(id(p) in si for p in g["params"]):
            assert all(id(p) in si for p in g["params"]) and g["weight_decay"] == 0.0 and g["lr_scale"] == 1.0
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)

    w, v, u = (nn.Parameter(torch.ones(2, 2)) for _ in range(3))
    merged = merge_claims([{"params": [w, v], "lr_scale": 0.1, "weight_decay": 1e-3}],
                          [{"params": [v, u], "weight_decay": 0.0}])
    assert merged == [{"params": [w], "lr_scale": 0.1, "weight_decay": 1e-3},
                      {"params": [v], "lr_scale": 0.1, "weight_decay": 0.0}, {"params": [u], "weight_decay": 0.0}]
    with pytest.raises(ValueError, match="two training methods"):
        merge_claims([], [{"params": [u]}, {"params": [u], "weight_decay": 0.0}])


@pytest.mark.parametrize("args, field", [
    (["--elr-radius", "2"], "methods.elr_radius"), (["--lr-rule", "auto", "--opt", "lion"], "methods.lr_rule"),
    (["--gradinit", "--opt", "lion"], "methods.gradinit"),
    (["--gradinit-min-scale", "1"], "methods.gradinit_min_scale"), (["--gradinit-lr", "0"], "methods.gradinit_lr")])
def test_cli_method_options_are_checked_before_training(tmp_path: Path, capsys, args, field):
    from search.cli import main

    assert main(["retrain", "wrn-10-1", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nas: error: {field}") and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- proxy training (search)


def proxy_config(epochs: int = 1, **methods) -> dict:
    return {"name": "methods", "data": {"name": "digits", "image_size": 8}, "latency": {"isolate": False},
            "proxy": {"epochs": epochs, "batch_size": 32, "lr": 0.2, "methods": methods}}


def test_proxy_evaluation_with_gradinit_lr_rule_and_elr_log():
    cfg = parse_config(proxy_config(epochs=2, gradinit=True, gradinit_iters=3, lr_rule="auto", lr_base_batch=128,
                                    elr="log"))
    reports: list[dict] = []
    final = ArchEvaluation(cfg, threads=1)(ARCH, reports.append)
    assert [r["epoch"] for r in reports] == [1, 2]
    first, last = reports
    # 0.2 · 32/128 = 0.05 (linear for SGD), halfway down the cosine after epoch 1 of 2
    assert first["lr"] == pytest.approx(0.05 * 0.5)
    assert first["elr"] == pytest.approx(first["lr"] / (1 - 0.9) / first["si_norm"] ** 2, rel=1e-6)  # momentum 0.9
    assert first["gradinit_iters"] == 3 and 0.01 <= first["gradinit_alpha_min"] <= first["gradinit_alpha_max"]
    assert "gradinit_iters" not in last and "elr" in last and not any(k.startswith("elr/") for k in last)
    assert final["elr"] == last["elr"] and final["gradinit_iters"] == 3 and final["oom_retries"] == 0


def test_proxy_fixed_elr_keeps_the_sphere():
    data = load_dataset("digits", image_size=8)
    reports: list[dict] = []
    ev = AccuracyEvaluator(data=data, epochs=2, batch_size=64, lr=0.1, threads=1,
                           methods=ProxyMethods(elr="fixed", elr_radius=3.0))
    ev.evaluate(ARCH, report=reports.append)
    assert [r["si_norm"] for r in reports] == pytest.approx([3.0, 3.0], rel=1e-5)
    assert reports[0]["elr"] == pytest.approx(reports[0]["lr"] / (1 - 0.9) / 9.0, rel=1e-5)  # momentum 0.9


@pytest.mark.parametrize("methods, field", [
    ({"lr_rule": "bogus"}, "proxy.methods.lr_rule"), ({"elr": "sometimes"}, "proxy.methods.elr"),
    ({"elr_radius": 1.0}, "proxy.methods.elr_radius"),
    ({"gradinit_min_scale": 1.0}, "proxy.methods.gradinit_min_scale")])
def test_proxy_method_config_errors_name_the_field(methods, field):
    with pytest.raises(ConfigError) as err:
        parse_config(proxy_config(**methods))
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
