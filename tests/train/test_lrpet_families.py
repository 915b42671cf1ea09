"""LRPET for every block family (issue 11 item 11): projection, factorised export as ``Arch.ranks``, from scratch.

Independent references: numpy-free recomputation of each projected conv's BN-folded weight (rank and Frobenius
norm from ``torch.linalg``), the BN each conv feeds read off the block's own attributes, fvcore's MACs, a fresh
``build_model`` of the YAML, and test accuracy recomputed from the raw digits split.
"""
from __future__ import annotations

import json

import pytest
import torch

from search.cli import main
from space import Arch, SpecError, Stage, Stem, build_model, from_yaml
from space.complexity import count_complexity
from train.compress.lrpet import ConvStructure, conv_structure, export_lowrank, lowrank_cost, lrpet_project

FAMILIES = {
    "bottleneck": Stage("bottleneck", 2, 32, 1, block_args={"bottle_ratio": 0.5}),
    "sk": Stage("sk", 1, 32, 1, block_args={"groups": 4, "min_dim": 8}),
    "ghost": Stage("ghost", 2, 24, 1),
    "g_ghost": Stage("g_ghost", 3, 32, 1),
    "mgic": Stage("mgic", 1, 32, 1, block_args={"group_size": 8, "coarsest_width": 8}),
    "resattn": Stage("resattn", 1, 32, 1, order="pre"),
}


def _model(stage: Stage) -> torch.nn.Module:
    from dataclasses import replace

    arch = Arch(stem=Stem(16, norm_act=True), stages=(stage, replace(stage, stride=2)), input_size=16)
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, in_chans=3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.2, 3.0)
                m.weight.uniform_(0.2, 2.0)
                m.bias.normal_(0, 0.3)
    return model.eval()


def _folded(conv, bn) -> torch.Tensor:
    w = conv.weight.detach().reshape(conv.out_channels, -1).double()
    if bn is None:
        return w
    return (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps))[:, None] * w


def test_each_conv_is_paired_with_the_batchnorm_it_feeds():
    model = _model(FAMILIES["bottleneck"])
    structure = conv_structure(model)
    assert isinstance(structure, ConvStructure)
    bns = {c.name: c.bn for c in structure.block_convs}
    for i in (1, 2, 3):  # post-order bottleneck: conv_i → norm_i
        assert bns[f"stages.0.0.conv{i}"] == f"stages.0.0.norm{i}"
    assert "stem.0" not in bns and all(not n.startswith("classifier") for n in bns)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_projects_and_exports_the_same_network(family):
    model = _model(FAMILIES[family])
    structure = conv_structure(model)
    modules = dict(model.named_modules())
    before = {c.name: _folded(c.module, modules.get(c.bn)) for c in structure.block_convs}
    ranks = lrpet_project(model, rank_ratio=0.25)
    used = {n: r for n, r in ranks.items() if r}
    assert used, family
    for c in structure.block_convs:
        if ranks[c.name]:
            after = _folded(c.module, modules.get(c.bn))
            assert int(torch.linalg.matrix_rank(after, rtol=1e-5)) <= ranks[c.name] * c.module.groups
            assert torch.allclose(torch.linalg.norm(after), torch.linalg.norm(before[c.name]), rtol=1e-5)
    grouped = {c.name: c.module.groups for c in structure.block_convs if c.module.groups > 1 and ranks[c.name]}
    if family == "mgic":  # its compute is in grouped convs: projected group by group
        assert grouped
        for c in structure.block_convs:
            if c.name in grouped:
                rows = c.module.out_channels // grouped[c.name]
                w = _folded(c.module, modules.get(c.bn))
                for g in range(grouped[c.name]):
                    assert int(torch.linalg.matrix_rank(w[g * rows:(g + 1) * rows], rtol=1e-5)) <= ranks[c.name]
    arch, small = export_lowrank(model, ranks, structure=structure)
    assert dict(arch.ranks) == used
    for name, g in grouped.items():
        assert small.get_submodule(name).v.groups == g == small.get_submodule(name).u.groups
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(small.eval()(x), model(x), atol=1e-4, rtol=1e-4)
    rebuilt = build_model(from_yaml(arch.to_yaml()), num_classes=5, in_chans=3)
    rebuilt.load_state_dict(small.state_dict(), strict=True)
    dense, low = (count_complexity(m, input_size=16, in_chans=3)["macs"] for m in (model, small))
    assert low < dense
    predicted = lowrank_cost(structure, ranks)["macs"]
    assert abs(predicted - low) <= 0.03 * low, (predicted, low)


def test_bad_ranks_in_a_yaml_name_the_field():
    arch = _model(FAMILIES["bottleneck"]).arch
    with pytest.raises(SpecError, match=r"ranks\.stages\.0\.0\.nope: 'stages\.0\.0\.nope' is not a conv"):
        build_model(arch.replace(ranks={"stages.0.0.nope": 2}), num_classes=5, in_chans=3)
    with pytest.raises(SpecError, match=r"ranks\.stages\.0\.0\.conv1: rank 999 exceeds"):
        build_model(arch.replace(ranks={"stages.0.0.conv1": 999}), num_classes=5, in_chans=3)


def test_nas_prune_lrpet_and_lrpet_from_scratch_on_a_ghost_network(tmp_path, capsys):
    arch = Arch(stem=Stem(16, norm_act=True), stages=(Stage("ghost", 1, 24, 1), Stage("bottleneck", 1, 32, 2)),
                input_size=8)
    (tmp_path / "arch.yaml").write_text(arch.to_yaml())
    torch.save(build_model(arch, num_classes=10, in_chans=1).state_dict(), tmp_path / "model.pt")
    code = main(["prune", str(tmp_path / "arch.yaml"), str(tmp_path / "model.pt"), "--method", "lrpet",
                 "--flops-target", "0.6", "--data", "digits", "--finetune-epochs", "1", "--threads", "1",
                 "--out", str(tmp_path / "pruned")])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "pruned" / "metrics.json").read_text())
    assert metrics["ratio"]["macs"] <= 0.61 and metrics["export_max_abs_diff"] < 1e-4
    code = main(["retrain", str(tmp_path / "arch.yaml"), "--data", "digits", "--epochs", "1", "-b", "64",
                 "--threads", "1", "--lrpet-target", "0.6", "--out", str(tmp_path / "scratch")])
    assert code == 0, capsys.readouterr().err
    out = from_yaml((tmp_path / "scratch" / "arch.yaml").read_text())
    assert out.ranks
    small = build_model(out, num_classes=10, in_chans=1)
    small.load_state_dict(torch.load(tmp_path / "scratch" / "model.pt", weights_only=True), strict=True)
    dense = count_complexity(build_model(arch, num_classes=10, in_chans=1), input_size=8, in_chans=1)["macs"]
    assert count_complexity(small, input_size=8, in_chans=1)["macs"] <= 0.62 * dense
    code = main(["prune", str(tmp_path / "scratch" / "arch.yaml"), str(tmp_path / "scratch" / "model.pt"),
                 "--flops-target", "0.6", "--data", "digits", "--out", str(tmp_path / "again")])
    err = capsys.readouterr().err
    assert code == 2 and "arch: it has factorised convs" in err and err.count("\n") == 1, err
