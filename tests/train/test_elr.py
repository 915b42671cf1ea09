"""Effective learning rate of scale-invariant weights (Kodryan et al. 2022): structural detection checked
numerically, ELR logging, the fixed-ELR sphere, its optimizer groups and the retrain hook."""
from __future__ import annotations

import copy
import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from space import build_model
from space.presets import wrn
from train import make_sgd
from train.methods import ElrTracker, FixedElr, MethodRunner, MethodsConfig, find_scale_invariant, si_param_groups_fn
from train.retrain.methods import ElrCallback

X = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def wrn_model(order: str = "pre", norm: str = "bn") -> nn.Module:
    arch = wrn(10, 0.5, input_size=8)
    arch = arch.replace(stages=tuple(dataclasses.replace(s, order=order, norm=norm) for s in arch.stages))
    return build_model(arch, num_classes=10, in_chans=1)


def output_change(model: nn.Module, name: str, c: float = 3.0) -> float:
    """Max |f(x) − f_{w→c·w}(x)| in train mode, relative to max |f(x)|, in float64 with the norms' ε ≈ 0
    (ε is what keeps a real normaliser from being exactly invariant)."""
    model = copy.deepcopy(model).double().train()
    for m in model.modules():
        if isinstance(getattr(m, "eps", None), float):
            m.eps = 1e-30
    p = dict(model.named_parameters())[name]
    with torch.no_grad():
        ref = model(X.double())
        p.mul_(c)
        out = model(X.double())
    return float((out - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("order,norm", [("pre", "bn"), ("post", "bn"), ("post", "gn")])
def test_detected_weights_are_scale_invariant(order, norm):
    model = wrn_model(order, norm)
    si = find_scale_invariant(model, X)
    convs = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert si and set(si) < convs
    for name in si:
        assert output_change(model, name) < 1e-9, f"{name} detected but not scale-invariant"
    missed = convs - set(si)
    if order == "pre":
        # pre-activation: each block's conv2 and projection shortcut feed the residual sum
        assert all(output_change(model, name) > 1e-3 for name in missed), missed
    else:
        # post-activation: only the stem conv is left out; its output reaches BN through the next
        # (bias-free) convs, an indirect invariance the direct structural rule does not claim
        assert missed == {"stem.0.weight"}


def test_detection_rules_for_bias_and_norm_kind():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 6, 6)
    bn_bias = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4))       # BN removes the bias: SI
    gn_bias = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.GroupNorm(2, 4))      # GN does not: not SI
    gn = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.GroupNorm(2, 4))          # SI
    act_first = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Tanh(), nn.BatchNorm2d(4))  # not SI
    shared = nn.Conv2d(3, 3, 3, padding=1, bias=False)
    twice = nn.Sequential(shared, nn.BatchNorm2d(3), shared)                        # used again: not SI
    assert find_scale_invariant(bn_bias, x) == ["0.weight"]
    assert find_scale_invariant(gn_bias, x) == []
    assert find_scale_invariant(gn, x) == ["0.weight"]
    assert find_scale_invariant(act_first, x) == []
    assert find_scale_invariant(twice, x) == []


def test_detection_leaves_mode_and_running_statistics_alone():
    model = wrn_model().eval()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    find_scale_invariant(model, X)
    assert not model.training
    assert all(torch.equal(stats[k], v) for k, v in model.state_dict().items())


def test_tracker_logs_lr_over_squared_norms():
    model = wrn_model()
    si = find_scale_invariant(model, X)
    params = dict(model.named_parameters())
    row = ElrTracker(model, si).log(0.1)
    total = sum(float(params[n].detach().pow(2).sum()) for n in si)
    assert row["elr"] == pytest.approx(0.1 / total, rel=1e-6)
    assert row["si_norm"] == pytest.approx(math.sqrt(total), rel=1e-6)
    for n in si:
        assert row[f"elr/{n}"] == pytest.approx(0.1 / float(params[n].detach().pow(2).sum()), rel=1e-6)
    opt = make_sgd(model, lr=0.05, momentum=0.9, weight_decay=0.0)
    assert ElrTracker(model, si, per_layer=False).on_epoch_end(1, model, opt) == {
        "elr": pytest.approx(0.05 / (1 - 0.9) / total, rel=1e-6), "si_norm": pytest.approx(math.sqrt(total), rel=1e-6)}
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    assert ElrTracker(model, si, per_layer=False).on_epoch_end(1, model, adam)["elr"] == pytest.approx(
        1e-3 / math.sqrt(total), rel=1e-6)
    with pytest.raises(ValueError, match="elr: no effective-learning-rate model for optimizer Adagrad"):
        ElrTracker(model, si).on_epoch_end(1, model, torch.optim.Adagrad(model.parameters()))
    with pytest.raises(ValueError, match="si_params"):
        ElrTracker(model, ["nope.weight"])


def test_fixed_elr_keeps_the_norm_through_training_steps():
    torch.manual_seed(0)
    model = wrn_model()
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(2))
    si_before = ElrTracker(model, find_scale_invariant(model, X), per_layer=False).log(1.0)["si_norm"]
    runner = MethodRunner(MethodsConfig(elr="fixed", gradinit=True, gradinit_iters=2, gradinit_lr=0.2))
    stats = runner.start(model, [(X, y)], lr=0.5, example_input=torch.zeros(2, 1, 8, 8))
    fixed = runner.fixed
    radius = fixed.radius
    assert stats["gradinit_iters"] == 2 and radius == pytest.approx(fixed.norm())
    assert abs(radius - si_before) > 1e-3, "the sphere is taken after GradInit rescaled the weights"
    opt = make_sgd(model, lr=0.5, momentum=0.9, weight_decay=5e-4, param_groups_fn=runner.param_groups_fn())
    si_ids = {id(p) for p in fixed.params.values()}
    for g in opt.param_groups:
        if any(id(p) in si_ids for p in g["params"]):
            assert g["weight_decay"] == 0.0 and all(id(p) in si_ids for p in g["params"])
    assert any(g["weight_decay"] > 0 for g in opt.param_groups), "the other weights keep their decay"
    drift = []
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
        drift.append(abs(fixed.norm() - radius) / radius)
        runner.on_step_end(model, opt)
        assert fixed.norm() == pytest.approx(radius, rel=1e-6)
    assert max(drift) > 1e-4, "an SGD step moves the norm (so the projection is doing the work)"
    row = runner.on_epoch_end(1, model, opt)
    assert row["elr"] == pytest.approx(fixed.elr(0.5, opt), rel=1e-5) == pytest.approx(
        0.5 / (1 - 0.9) / radius ** 2, rel=1e-5)  # Nesterov momentum 0.9: ten times the plain-SGD value


def test_fixed_radius_and_errors():
    model = wrn_model()
    si = find_scale_invariant(model, X)
    fixed = FixedElr(model, si, radius=2.0)
    fixed.after_step()
    assert fixed.norm() == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError, match="elr_radius"):
        FixedElr(model, si, radius=-1.0)
    with pytest.raises(ValueError, match="no"):
        FixedElr(nn.Sequential(nn.Linear(3, 3)), [])
    with pytest.raises(ValueError, match="elr:"):
        MethodsConfig(elr="sphere").check()


def test_si_groups_keep_claimed_lr_scale():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3))

    def base(m):
        return [{"params": [m[0].weight], "lr_scale": 0.5, "weight_decay": 1e-3}]

    groups = si_param_groups_fn(["0.weight"], base=base)(model)
    assert groups == [{"params": [model[0].weight], "lr_scale": 0.5, "weight_decay": 0.0}]


def test_retrain_callback_logs_projects_and_refuses_decay():
    torch.manual_seed(0)
    model = wrn_model()
    info = SimpleNamespace(device=torch.device("cpu"))
    ctx = SimpleNamespace(model=model, arch=SimpleNamespace(input_size=8), data=SimpleNamespace(in_chans=1),
                          info=info, out=lambda s: None, epoch=0,
                          optimizer=make_sgd(model, lr=0.1, momentum=0.9, weight_decay=5e-4))
    log = ElrCallback(mode="log")
    log.on_start(ctx)
    row: dict = {}
    log.on_epoch_end(ctx, row)
    assert row["elr"] > 0 and any(k.startswith("elr/") for k in row)

    fixed = ElrCallback(mode="fixed")
    with pytest.raises(ValueError, match="weight decay"):
        fixed.on_start(ctx)
    claims = fixed.param_claims(model, X)
    ctx.optimizer = make_sgd(model, lr=0.1, momentum=0.9, weight_decay=5e-4, param_groups_fn=lambda m: claims)
    fixed.on_start(ctx)
    radius = fixed.fixed.radius
    with torch.no_grad():
        for p in fixed.fixed.params.values():
            p.mul_(1.5)
    fixed.on_step_end(ctx, torch.tensor(0.0))
    assert fixed.fixed.norm() == pytest.approx(radius, rel=1e-6)
    resumed = ElrCallback(mode="fixed")
    resumed.load_state_dict(fixed.state_dict())
    assert resumed.radius == radius


def _tangential_norm(v: torch.Tensor, w: torch.Tensor) -> float:
    u = w / w.norm()
    return float((v - (v * u).sum() * u).norm())


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_logged_elr_predicts_the_angular_update_of_a_scale_invariant_weight(kind):
    """Conv → BatchNorm: measure the angle the weight's direction turns per step and compare it with the logged
    ELR times the step's size on the unit sphere. SGD (van Laarhoven 2017; Arora et al. 2019): the gradient of
    w = ‖w‖u is ∇_u L/‖w‖, so Δu = lr·∇_u L/‖w‖²; with momentum μ a slowly turning gradient is applied 1/(1−μ)
    times in the steady state. Adam (Roburin et al. 2020): the step m̂/(√v̂+ε) does not scale with ‖w‖, so
    Δu = lr·tan(m̂/√v̂)/‖w‖. The weight norm is set to 5 so a wrong power or momentum factor shows."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 6 * 6, 5))
    w = net[0].weight
    with torch.no_grad():
        w.mul_(5.0 / w.norm())
    x = torch.randn(32, 3, 8, 8)
    y = torch.randint(0, 5, (32,))
    opt = {"sgd": lambda: torch.optim.SGD([w], lr=0.5),
           "momentum": lambda: torch.optim.SGD([w], lr=0.01, momentum=0.9),
           "adam": lambda: torch.optim.Adam([w], lr=2e-3)}[kind]()
    tracker = ElrTracker(net, ["0.weight"], per_layer=False)
    for step in range(150):  # momentum: the steady state (measured ratio 1.035 at step 150)
        elr = tracker.on_epoch_end(step, net, opt)["elr"]
        before = w.detach().clone()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        unit_grad = float(w.grad.norm()) * float(before.norm())  # ‖∇_u L‖ on the unit sphere
        opt.step()
        cos = float((before * w.detach()).sum() / (before.norm() * w.detach().norm()))
        angle = math.acos(min(1.0, cos))
        if kind == "adam":
            state = opt.state[w]
            t = float(state["step"])
            m_hat = state["exp_avg"] / (1 - 0.9 ** t)
            v_hat = state["exp_avg_sq"] / (1 - 0.999 ** t)
            predicted = elr * _tangential_norm(m_hat / (v_hat.sqrt() + 1e-8), before)
        else:
            predicted = elr * unit_grad
    assert angle == pytest.approx(predicted, rel=0.1)


@pytest.mark.parametrize("mode", ["log", "fixed"])
def test_elr_refuses_optimizers_without_a_model_in_one_line(mode):
    from train.retrain import RetrainConfig

    with pytest.raises(ValueError) as info:
        RetrainConfig(opt="lamb", methods=MethodsConfig(elr=mode))
    assert "methods.elr: no effective-learning-rate model for opt 'lamb'; valid opt with elr: adam, adamax" in str(
        info.value) and "\n" not in str(info.value)
    assert RetrainConfig(opt="adamw", lr=1e-3, methods=MethodsConfig(elr=mode)).methods.elr == mode
