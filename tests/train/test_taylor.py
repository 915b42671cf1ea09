"""Taylor channel pruning: channel groups, the exact cost model, exact surgery, the importance
criterion, iterative pruning to a MACs/params target, and `nas prune` through the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from search.cli import main
from space import ORDERS, Arch, Stage, Stem, build_model, from_yaml
from space.complexity import count_complexity
from train.compress import TaylorPruner, analyse, apply_pruning, load_weights, taylor_scores

ROOT = Path(__file__).resolve().parents[2]


def _arch(order: str = "pre", *, stem_norm_act: bool = False, widths=(16, 24), depth: int = 2, stride0: int = 1,
          **stage_kw) -> Arch:
    stages = (Stage("basic", depth, widths[0], stride0, order=order, **stage_kw),
              Stage("basic", depth, widths[1], 2, order=order, **stage_kw))
    return Arch(stem=Stem(width=16, norm_act=stem_norm_act), stages=stages, input_size=12)


def _model(arch: Arch, *, num_classes: int = 5) -> torch.nn.Module:
    """A model with non-trivial BN statistics and affine parameters, in eval mode."""
    model = build_model(arch, num_classes=num_classes, in_chans=1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.3)
    return model.eval()


def _random_keep(structure, fraction: float = 0.6, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {g.name: torch.randperm(g.size, generator=gen)[:max(1, round(fraction * g.size))]
            for g in structure.prunable()}


def _zero_dropped(model, structure, keep) -> None:
    """Zero the gates of the dropped channels the BN way: γ = β = 0 in every gate norm of the group."""
    modules = dict(model.named_modules())
    for name, idx in keep.items():
        drop = torch.ones(structure.groups[name].size, dtype=torch.bool)
        drop[idx] = False
        for norm in structure.groups[name].gates:
            modules[norm].weight.data[drop] = 0.0
            modules[norm].bias.data[drop] = 0.0


@pytest.mark.parametrize("order", ORDERS)
def test_cost_model_matches_fvcore_before_and_after_pruning(order):
    model = _model(_arch(order, stem_norm_act=order == "post"))
    structure = analyse(model)
    full = count_complexity(model, input_size=12, in_chans=1)
    assert structure.cost() == {"macs": full["macs"], "params": full["params"]}
    keep = _random_keep(structure)
    _, small = apply_pruning(model, structure, keep)
    predicted = structure.cost({**structure.sizes(), **{g: len(i) for g, i in keep.items()}})
    got = count_complexity(small, input_size=12, in_chans=1)
    assert predicted == {"macs": got["macs"], "params": got["params"]} and got["macs"] < 0.6 * full["macs"]


@pytest.mark.parametrize("order", ORDERS)
def test_surgery_is_exact_for_kept_channels_and_yaml_rebuilds_it(order):
    model = _model(_arch(order, stem_norm_act=order == "post"))
    structure = analyse(model)
    assert len(structure.prunable()) == len(structure.groups)  # every group of a BN/ReLU basic network
    keep = _random_keep(structure)
    _zero_dropped(model, structure, keep)
    x = torch.randn(6, 1, 12, 12)
    with torch.no_grad():
        masked = model(x)
    arch, small = apply_pruning(model, structure, keep)
    rebuilt = build_model(from_yaml(arch.to_yaml()), num_classes=5, in_chans=1)
    rebuilt.load_state_dict(small.state_dict(), strict=True)
    rebuilt.eval()
    with torch.no_grad():
        out = rebuilt(x)
    assert torch.allclose(out, masked, atol=1e-5, rtol=1e-4)
    assert all(s.block == "basic_slim" for s in arch.stages)
    assert arch.stages[0].block_kw["mids"] == (len(keep["stages.0.0.mid"]), len(keep["stages.0.1.mid"]))


def test_residual_connected_channels_are_pruned_together():
    # WRN-style: stem 16 → stage 0 width 16 (identity shortcuts: stem and stage 0 are one stream)
    model = _model(_arch("pre", widths=(16, 32)))
    structure = analyse(model)
    stem = structure.groups["stem"]
    assert stem.targets == [("stem",), ("width", 0)]
    assert set(stem.gates) == {"stages.0.0.norm1", "stages.0.1.norm1", "stages.1.0.norm1"}
    assert structure.stage_groups == ["stem", "stages.1.stream"]
    arch, small = apply_pruning(model, structure, {"stem": torch.arange(0, 16, 2)})
    assert arch.stem.width == arch.stages[0].width == 8 and arch.stages[1].block_kw.get("proj") is True
    # a stride-1 stage whose projection survives although pruning made in == out width
    model = _model(_arch("post", stem_norm_act=True, widths=(24, 32)))
    structure = analyse(model)
    arch, small = apply_pruning(model, structure, {"stages.0.stream": torch.arange(16)})
    assert arch.stem.width == arch.stages[0].width == 16 and arch.stages[0].block_kw["proj"] is True
    assert not isinstance(small.stages[0][0].shortcut, torch.nn.Identity)


def test_groups_that_cannot_be_pruned_exactly_say_why():
    reasons = {g.name: g.reason for g in analyse(_model(_arch("post"))).groups.values()}
    assert "no norm after it" in reasons["stem"] and reasons["stages.0.0.mid"] is None  # post stem without norm
    gn = analyse(build_model(_arch("post", stem_norm_act=True, norm="gn", norm_args={"groups": 4}),
                             num_classes=5, in_chans=1))
    assert all("BatchNorm2d" in g.reason for g in gn.groups.values())
    sig = analyse(build_model(_arch("pre", act="sigmoid"), num_classes=5, in_chans=1))
    assert all("does not map 0 to 0" in g.reason for g in sig.groups.values())
    se = analyse(build_model(_arch("post", stem_norm_act=True, attention="se"), num_classes=5, in_chans=1))
    assert "attention" in se.groups["stages.1.stream"].reason and se.groups["stages.1.0.mid"].prunable
    bad = Arch(stem=Stem(16), stages=(Stage("ghost", 1, 16, 1),), input_size=12)
    with pytest.raises(ValueError, match="stages\\[0\\].block: 'ghost' is not supported"):
        analyse(build_model(bad, num_classes=5, in_chans=1))


def test_taylor_estimate_tracks_the_true_loss_change_and_zero_channels_score_zero():
    model = build_model(_arch("post", stem_norm_act=True, depth=1, widths=(16, 32)), num_classes=5, in_chans=1)
    for m in model.modules():  # fresh statistics, varied affine: a smooth regime where first order is meaningful
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    model = model.double().eval()
    norm = model.stages[0][0].norm1  # gate of stages.0.0.mid
    norm.weight.data[3] = 1e-4
    norm.bias.data[3] = 0.0  # channel 3 contributes ~nothing
    x, y = torch.randn(64, 1, 12, 12, dtype=torch.float64), torch.randint(0, 5, (64,))
    scores = taylor_scores(model, [(x, y)])
    assert scores["stages.0.0.mid"][3] < 1e-10 < float(scores["stages.0.0.mid"].max())
    pruner = TaylorPruner(model)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    for name in ("stages.0.0.mid", "stages.1.stream"):
        grad = pruner.gates[name].grad.clone()
        actual = []
        for c in range(len(grad)):
            with torch.no_grad():
                pruner.gates[name][c] = 0.0
                actual.append(float(F.cross_entropy(model(x), y) - loss))
                pruner.gates[name][c] = 1.0
        corr = torch.corrcoef(torch.stack([-grad, torch.tensor(actual, dtype=grad.dtype)]))[0, 1]
        assert corr > 0.9, (name, float(corr))  # ΔL ≈ -∂L/∂g: the first-order Taylor term
    pruner.remove_hooks()
    keep = {"stages.0.0.mid": torch.tensor([c for c in range(16) if c != 3])}
    _, small = apply_pruning(model, analyse(model), keep)
    with torch.no_grad():
        ref = model(x)
        assert (small.eval()(x) - ref).abs().max() < 1e-3 * ref.abs().max()  # removing the ~0-importance channel


@pytest.mark.parametrize("metric,fraction", [("macs", 0.6), ("params", 0.5)])
def test_iterative_pruning_hits_the_target_and_the_yaml_rebuilds_the_model(metric, fraction):
    model = _model(_arch("pre", widths=(16, 32))).train()
    full = count_complexity(model, input_size=12, in_chans=1)
    pruner = TaylorPruner(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(1, 4):
        for _ in range(2):
            x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 5, (16,))
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            pruner.accumulate()
            opt.step()
        pruner.prune_global(full[metric] * (1 - (1 - fraction) * step / 3), metric=metric)
        pruner.reset()
    x = torch.randn(4, 1, 12, 12)
    model.eval()
    with torch.no_grad():
        masked = model(x)
    arch, small = pruner.finalize()
    got = count_complexity(small, input_size=12, in_chans=1)
    assert abs(got[metric] / full[metric] - fraction) <= 0.05 * fraction
    rebuilt = build_model(from_yaml(arch.to_yaml()), num_classes=5, in_chans=1)
    rebuilt.load_state_dict(small.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), masked, atol=1e-5)
    assert min(len(i) for i in pruner.keep().values()) >= 1


def test_load_weights_accepts_state_dicts_and_retrain_checkpoints(tmp_path):
    state = build_model(_arch(), num_classes=5, in_chans=1).state_dict()
    torch.save(state, tmp_path / "model.pt")
    torch.save({"format": 2, "epoch": 3, "model": state, "history": [{"a": 1.0}]}, tmp_path / "checkpoint.pt")
    for name in ("model.pt", "checkpoint.pt"):
        assert load_weights(tmp_path / name).keys() == state.keys()
    (tmp_path / "junk.pt").write_text("nope")
    with pytest.raises(ValueError, match="CKPT: .* is not a torch checkpoint"):
        load_weights(tmp_path / "junk.pt")


def test_cli_rejects_bad_option_combinations(tmp_path, capsys):
    torch.save(build_model(_arch(), num_classes=10, in_chans=1).state_dict(), tmp_path / "m.pt")
    (tmp_path / "a.yaml").write_text(_arch().to_yaml())
    code = main(["prune", str(tmp_path / "a.yaml"), str(tmp_path / "m.pt"), "--out", str(tmp_path / "o"),
                 "--rank-ratio", "0.5"])
    assert code == 2 and "flops_target: method taylor needs exactly one of" in capsys.readouterr().err
    code = main(["prune", str(tmp_path / "a.yaml"), str(tmp_path / "m.pt"), "--out", str(tmp_path / "o"),
                 "--flops-target", "1.5"])
    assert code == 2 and "must be in (0, 1)" in capsys.readouterr().err


def _prune_args(tmp_path: Path, *extra: str) -> list[str]:
    arch = _arch("pre", widths=(16, 32)).replace(input_size=16)
    torch.save({"model": build_model(arch, num_classes=10, in_chans=1).state_dict()}, tmp_path / "checkpoint.pt")
    (tmp_path / "arch.yaml").write_text(arch.to_yaml())
    return ["prune", str(tmp_path / "arch.yaml"), str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path / "pruned"),
            "--finetune-epochs", "1", "--threads", "1", *extra]


def _check_output(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    model = build_model(from_yaml((out / "arch.yaml").read_text()), num_classes=10, in_chans=1)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True), strict=True)
    assert count_complexity(model, input_size=16, in_chans=1)["macs"] == metrics["after"]["macs"]
    assert 0.0 <= metrics["after"]["test_acc"] <= 1.0 and len(metrics["finetune_history"]) == 1
    return metrics


def test_nas_prune_taylor_with_redundancy_budget_on_digits(tmp_path, capsys):
    code = main(_prune_args(tmp_path, "--flops-target", "0.6", "--steps", "2", "--interval", "2",
                            "--budget", "redundancy", "--redundancy-batches", "2"))
    assert code == 0 and "taylor: macs" in capsys.readouterr().out
    metrics = _check_output(tmp_path / "pruned")
    assert abs(metrics["ratio"]["macs"] - 0.6) <= 0.03 and metrics["surgery_max_abs_diff"] < 1e-4
    assert set(metrics["layer_redundancy"]) >= {"stem.0", "stages.0.0.conv1"} and len(metrics["prune_history"]) == 2


def test_a_diverging_network_stops_pruning_at_its_first_step(tmp_path, capsys, monkeypatch):
    """A loss that turns non-finite is a failure at run time, not bad input: exit 1, traceback in a log."""
    args = _prune_args(tmp_path, "--flops-target", "0.6", "--steps", "2", "--interval", "2")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    state["classifier.weight"].fill_(float("nan"))
    torch.save({"model": state}, tmp_path / "checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NAS_DEBUG", raising=False)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("nas: error: NonFiniteLossError: non-finite training loss nan at iteration 0")
    assert "NonFiniteLossError" in (tmp_path / "nas-error.log").read_text()
    assert not (tmp_path / "pruned").exists()


@pytest.mark.slow
def test_nas_prune_lrpet_through_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "search.cli", *_prune_args(tmp_path, "--method", "lrpet",
                                                                             "--rank-ratio", "0.3")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    metrics = _check_output(tmp_path / "pruned")
    assert metrics["export_max_abs_diff"] < 1e-4 and metrics["ratio"]["macs"] < 0.7
