"""``nas onnx`` (with retrained weights from ``nas retrain --onnx``) and ``nas export --onnx``: files ONNX Runtime
runs to the outputs PyTorch computes."""
from __future__ import annotations

import pytest
import timm
import torch

from evaluators.onnx_runtime import check_against_torch
from search.cli import main
from search.results.export import open_run
from space import Arch, Head, Stage, Stem, build_model, from_yaml

from ._tiny_run import copy_run, tiny_run


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "tiny_shared"  # the run tests/search/test_report.py shares
    base.mkdir(exist_ok=True)
    return tiny_run(base)


def test_retrain_writes_model_onnx_and_nas_onnx_exports_the_weights(tmp_path, capsys):
    arch = Arch(stem=Stem(width=8), stages=(Stage("basic", 1, 8, 1), Stage("basic", 1, 16, 2)), head=Head(),
                input_size=16)
    (tmp_path / "arch.yaml").write_text(arch.to_yaml())
    out = tmp_path / "run"
    assert main(["retrain", str(tmp_path / "arch.yaml"), "--epochs", "1", "--threads", "1", "--no-tensorboard",
                 "--onnx", "--out", str(out)]) == 0
    trained = timm.create_model("nas_arch", arch=str(out / "arch.yaml"), num_classes=10, in_chans=1,
                                checkpoint_path=str(out / "model.pt"))
    assert check_against_torch(trained, (out / "model.onnx").read_bytes(), input_shape=(3, 1, 16, 16)) <= 1e-4
    fresh = build_model(arch, num_classes=10, in_chans=1)  # differs from the trained weights
    assert check_against_torch(fresh, (out / "model.onnx").read_bytes(), input_shape=(3, 1, 16, 16)) > 1e-3

    capsys.readouterr()
    assert main(["onnx", str(out / "arch.yaml"), "--weights", str(out / "model.pt"), "--in-chans", "1",
                 "--out", str(tmp_path / "again.onnx")]) == 0
    line = capsys.readouterr().out
    assert "opset 18" in line and "ONNX Runtime matches PyTorch" in line
    assert check_against_torch(trained, (tmp_path / "again.onnx").read_bytes(), input_shape=(2, 1, 16, 16)) <= 1e-4
    assert main(["onnx", str(out / "arch.yaml"), "--weights", str(out / "model.pt"), "--out",
                 str(tmp_path / "x.onnx")]) == 2  # 3 input channels: the weights do not fit


def test_export_onnx_writes_one_graph_per_front_architecture(tiny, tmp_path):
    run = copy_run(tiny, tmp_path)
    assert main(["export", str(run), "--onnx"]) == 0
    study, _ = open_run(run)
    yamls = sorted(p.stem for p in (run / "pareto").glob("*.yaml"))
    assert sorted(p.stem for p in (run / "pareto").glob("*.onnx")) == yamls
    assert yamls == sorted({t.user_attrs["arch_id"] for t in study.best_trials})
    arch = from_yaml((run / "pareto" / f"{yamls[0]}.yaml").read_text())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the export's seeded weights
        model = build_model(arch, num_classes=10, in_chans=1)
    data = (run / "pareto" / f"{yamls[0]}.onnx").read_bytes()
    assert check_against_torch(model, data, input_shape=(2, 1, arch.input_size, arch.input_size)) <= 1e-4
    assert main(["export", str(run)]) == 0
    assert not list((run / "pareto").glob("*.onnx"))  # a plain export leaves no stale graphs
