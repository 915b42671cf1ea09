"""LRPET: projection with BN rectification and energy transfer, the epoch-end callback, and the
export to factorised convs (fewer params/MACs, same outputs as the projected dense network)."""
from __future__ import annotations

import pytest
import torch

from space import ORDERS, Arch, Stage, Stem, build_model, from_yaml
from space.complexity import count_complexity
from train.compress import (
    LrpetCallback,
    analyse,
    export_lowrank,
    lowrank_cost,
    lrpet_project,
    plan_ranks,
    project_weight,
    ranks_for_target,
)


def _model(order: str) -> torch.nn.Module:
    arch = Arch(stem=Stem(width=16, norm_act=True), stages=(Stage("basic", 2, 16, 1, order=order),
                                                            Stage("basic", 1, 32, 2, order=order)), input_size=12)
    model = build_model(arch, num_classes=5, in_chans=1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.2, 3.0)
            m.weight.data.uniform_(0.2, 2.0)
            m.bias.data.normal_(0, 0.3)
    return model.eval()


def _rank(matrix: torch.Tensor) -> int:
    """Numerical rank of a weight stored in float32 (singular values below 1e-5·σ_max are rounding noise)."""
    return int(torch.linalg.matrix_rank(matrix.double(), rtol=1e-5))


def _folded(conv, bn) -> torch.Tensor:
    w = conv.weight.detach().reshape(conv.out_channels, -1).double()
    if bn is None:
        return w
    return (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps))[:, None] * w


def test_project_weight_is_the_energy_preserving_truncated_svd():
    torch.manual_seed(0)
    w = torch.randn(12, 4, 3, 3, dtype=torch.float64)
    scale = torch.rand(12, dtype=torch.float64) + 0.1
    p = project_weight(w, 3, scale)
    folded, folded_p = scale[:, None] * w.reshape(12, -1), scale[:, None] * p.reshape(12, -1)
    assert torch.linalg.matrix_rank(folded_p) == 3
    assert torch.allclose(torch.linalg.norm(folded_p), torch.linalg.norm(folded))  # energy transfer
    u, s, vh = torch.linalg.svd(folded, full_matrices=False)
    best = (u[:, :3] * s[:3]) @ vh[:3]  # Eckart–Young: the same subspaces, rescaled singular values
    assert torch.allclose(folded_p, best * torch.linalg.norm(s) / torch.linalg.norm(s[:3]))
    assert torch.allclose(project_weight(p, 3, scale), p)  # projecting a projected weight changes nothing


@pytest.mark.parametrize("order", ORDERS)
def test_projection_keeps_rank_and_frobenius_norm_of_the_bn_folded_weight(order):
    model = _model(order)
    structure = analyse(model)
    modules = dict(model.named_modules())
    before = {c.name: _folded(c.module, modules.get(c.bn)) for c in structure.block_convs}
    ranks = lrpet_project(model, rank_ratio=0.25)
    assert sum(r > 0 for r in ranks.values()) == len(ranks)
    for c in structure.block_convs:
        after = _folded(c.module, modules.get(c.bn))
        assert _rank(after) <= ranks[c.name] < min(after.shape)
        assert torch.allclose(torch.linalg.norm(after), torch.linalg.norm(before[c.name]), rtol=1e-5)
    expected_bn = {"post": ("norm1", "norm2"), "pre": ("norm2", None), "white_conv": (None, None)}[order]
    assert [c.bn.rsplit(".", 1)[1] if c.bn else None for c in structure.block_convs[:2]] == list(expected_bn)


@pytest.mark.parametrize("order", ["post", "pre"])
def test_export_is_smaller_and_computes_the_projected_network(order):
    model = _model(order)
    structure = analyse(model)
    ranks = plan_ranks(structure, rank_ratio=0.3)
    LrpetCallback(ranks).on_epoch_end(model)
    arch, small = export_lowrank(model, ranks, structure=structure)
    x = torch.randn(5, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(small.eval()(x), model(x), atol=1e-5, rtol=1e-4)
    dense, low = (count_complexity(m, input_size=12, in_chans=1) for m in (model, small))
    assert low["params"] < dense["params"] and low["macs"] < dense["macs"]
    assert lowrank_cost(structure, ranks) == {"macs": low["macs"], "params": low["params"]}
    rebuilt = build_model(from_yaml(arch.to_yaml()), num_classes=5, in_chans=1)
    rebuilt.load_state_dict(small.state_dict(), strict=True)
    assert arch.stages[0].block == "basic_lowrank" and len(arch.stages[0].block_kw["ranks"]) == 4


def test_ranks_that_would_not_save_stay_dense_and_the_target_is_met():
    model = _model("post")
    structure = analyse(model)
    assert set(plan_ranks(structure, rank_ratio=1.0).values()) == {0}  # full rank: a factorisation is larger
    near = plan_ranks(structure, rank_ratio=0.95)  # 16×144 convs: rank 15 costs 15·160 = 2400 > 2304 weights
    assert near["stages.0.0.conv2"] == 0 and plan_ranks(structure, rank_ratio=0.9)["stages.0.0.conv2"] == 14
    full = structure.cost()["macs"]
    ranks = ranks_for_target(structure, 0.6 * full)
    got = lowrank_cost(structure, ranks)["macs"]
    assert 0.55 * full <= got <= 0.6 * full
    with pytest.raises(ValueError, match="even rank 1 everywhere"):
        ranks_for_target(structure, 0.01 * full)


def test_callback_plugs_into_retrain_and_keeps_its_state():
    from train.retrain import Callback

    model = _model("post")
    ranks = plan_ranks(analyse(model), rank_ratio=0.25)
    cb = LrpetCallback(ranks)
    assert isinstance(cb, Callback)

    class Ctx:  # what retrain passes: a context holding the bare model
        pass

    ctx = Ctx()
    ctx.model = model
    row: dict = {}
    cb.on_epoch_end(ctx, row)
    assert row["lrpet_projections"] == 1
    w = model.stages[0][0].conv1.weight
    assert _rank(w.detach().reshape(w.shape[0], -1)) <= ranks["stages.0.0.conv1"]
    restored = LrpetCallback({})
    restored.load_state_dict(cb.state_dict())
    assert restored.ranks == ranks and restored.projections == 1
    with pytest.raises(ValueError, match="is not a block conv"):
        lrpet_project(model, {"stem.0": 2})


def test_compress_with_lrpet_on_digits_writes_a_loadable_factorised_network(tmp_path):
    from train.compress import CompressConfig, compress

    arch = Arch(stem=Stem(width=16, norm_act=True), stages=(Stage("basic", 1, 16, 1), Stage("basic", 1, 32, 2)),
                input_size=16)
    state = build_model(arch, num_classes=10, in_chans=1).state_dict()
    cfg = CompressConfig(method="lrpet", flops_target=0.6, finetune_epochs=1, batch_size=256, threads=1)
    metrics = compress(arch, state, cfg, out_dir=tmp_path, out=lambda s: None)
    assert metrics["export_max_abs_diff"] < 1e-4 and len(metrics["finetune_history"]) == 1
    assert 0.5 <= metrics["ratio"]["macs"] <= 0.6 and metrics["ratio"]["params"] < 1
    model = build_model(from_yaml((tmp_path / "arch.yaml").read_text()), num_classes=10, in_chans=1)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True), strict=True)
    assert count_complexity(model, input_size=16, in_chans=1)["macs"] == metrics["after"]["macs"]
