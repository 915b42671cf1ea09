"""LRPET from scratch in ``nas retrain`` (``--lrpet-target``/``--lrpet-rank``): projection after every epoch of
training from the random initialisation, and the factorised network as the run's arch.yaml/model.pt."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from fvcore.nn import FlopCountAnalysis

from space import Arch, Head, Stage, Stem, build_model, from_yaml
from train.data import load_dataset, to_unit_float

from ._callbacks import StopAt


def _arch() -> Arch:
    return Arch(stem=Stem(width=16), stages=(Stage("basic", 1, 16, 1), Stage("basic", 1, 32, 2)),
                head=Head(), input_size=8)


def _conv_macs(model: torch.nn.Module, size: int) -> int:
    """Multiply-adds of the convs and the classifier, from fvcore's per-operator counts (independent of our counter)."""
    flops = FlopCountAnalysis(model.eval(), torch.zeros(1, 1, size, size))
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(sum(v for k, v in flops.by_operator().items() if k in ("conv", "linear", "addmm", "matmul")))


def _digits_test_acc(model: torch.nn.Module) -> float:
    """Test accuracy of ``model`` on digits at 8×8, computed here from the raw split (not through train/)."""
    data = load_dataset("digits")
    x = data.test.normalise(to_unit_float(data.test.images))
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    return float((pred == data.test.labels).float().mean())


def _retrain(tmp_path, *extra: str, out: str = "run") -> int:
    from search.cli import main

    arch_path = tmp_path / "arch.yaml"
    arch_path.write_text(_arch().to_yaml())
    return main(["retrain", str(arch_path), "--data", "digits", "--epochs", "3", "-b", "64", "--lr", "0.05",
                 "--threads", "1", "--out", str(tmp_path / out), *extra])


def test_lrpet_target_trains_low_rank_from_scratch_and_exports_the_factorised_network(tmp_path):
    assert _retrain(tmp_path, "--lrpet-target", "0.6", "--no-tensorboard") == 0
    out = tmp_path / "run"
    metrics = json.loads((out / "metrics.json").read_text())
    arch = from_yaml((out / "arch.yaml").read_text())
    assert {s.block for s in arch.stages} == {"basic_lowrank"} and metrics["arch_id"] == arch.arch_id
    assert metrics["dense_arch_id"] != arch.arch_id
    model = timm.create_model("nas_arch", arch=arch, num_classes=10, in_chans=1)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True), strict=True)

    dense = build_model(_arch(), num_classes=10, in_chans=1)
    ratio = _conv_macs(model, 8) / _conv_macs(dense, 8)
    assert 0.45 <= ratio <= 0.6, ratio  # the MACs target, counted by fvcore on the built networks
    ranks = {int(r) for s in arch.stages for r in s.block_kw["ranks"]}
    assert ranks and max(ranks) > 0
    for name, module in model.named_modules():  # every factorised pair: rank of u·v <= its planned rank
        if hasattr(module, "u") and hasattr(module, "v"):
            u = module.u.weight.detach().double().flatten(1)
            v = module.v.weight.detach().double().flatten(1)
            assert torch.linalg.matrix_rank(u @ v) <= u.shape[1], name
    acc = _digits_test_acc(model)
    assert metrics["test_acc"] == pytest.approx(acc, abs=1e-6)  # the reported accuracy is the exported model's
    assert acc > 0.2  # it learnt (10 classes; 3 short epochs)
    assert all("lrpet_projections" in row for row in metrics["history"])
    assert [row["lrpet_projections"] for row in metrics["history"]] == [1, 2, 3]


def test_lrpet_from_scratch_resumes_to_the_same_network(tmp_path):
    from train.retrain import RetrainConfig, retrain

    cfg = RetrainConfig(data="digits", epochs=3, batch_size=64, lr=0.05, threads=1, tensorboard=False,
                        lrpet_rank=0.25)
    full = retrain(_arch(), cfg, out_dir=tmp_path / "full", out=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        retrain(_arch(), cfg, out_dir=tmp_path / "cut", out=lambda s: None, callbacks=[StopAt(2)])
    resumed = retrain(_arch(), cfg, out_dir=tmp_path / "cut", resume=True, out=lambda s: None)
    assert resumed["arch_id"] == full["arch_id"] and resumed["test_acc"] == full["test_acc"]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lrpet_scratch_bad_input_is_one_line(tmp_path, capsys):
    assert _retrain(tmp_path, "--lrpet-target", "0.6", "--lrpet-rank", "0.3") == 2
    err = capsys.readouterr().err
    assert err.startswith("nas: error: lrpet_rank:") and err.count("\n") == 1, err
    assert _retrain(tmp_path, "--lrpet-target", "1.5") == 2
    assert capsys.readouterr().err.startswith("nas: error: lrpet_target:")
    assert not (tmp_path / "run").exists()
