"""GradInit (Zhu et al. 2021): learned per-tensor scales on a small WRN on digits, the gradient-norm
constraint, the Adam variant, option checks, and the retrain hook."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from space import build_model
from space.presets import wrn
from train import load_dataset, make_loaders
from train.methods import gradinit, inner_optimizer_for
from train.methods.gradinit import FIRST_STEP, first_step
from train.retrain.methods import GradInitCallback


@pytest.fixture(scope="module")
def digits8():
    data = load_dataset("digits", image_size=8)
    train, val = make_loaders(data, batch_size=64, val_fraction=0.3, seed=0, augment=True)
    return train, list(val)


def small_wrn() -> nn.Module:
    torch.manual_seed(0)
    return build_model(wrn(10, 0.5, input_size=8), num_classes=10, in_chans=1)


def loss_after_one_step(model: nn.Module, lr: float, pairs) -> float:
    """Mean loss on batch b after one plain SGD step (lr) on batch a, from ``model``'s weights, train mode."""
    losses = []
    for (xa, ya), (xb, yb) in pairs:
        m = copy.deepcopy(model).train()
        loss = F.cross_entropy(m(xa), ya)
        grads = torch.autograd.grad(loss, list(m.parameters()))
        with torch.no_grad():
            for p, g in zip(m.parameters(), grads):
                p.sub_(lr * g)
            losses.append(float(F.cross_entropy(m(xb), yb)))
    return sum(losses) / len(losses)


def test_gradinit_scales_weights_and_lowers_the_one_step_loss(digits8):
    train, val = digits8
    pairs = [(val[i], val[i + 1]) for i in range(0, 6, 2)]
    lr = 0.5
    model = small_wrn()
    before = loss_after_one_step(model, lr, pairs)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    running = model.stages[1][0].norm1.running_var.clone()
    model.eval()
    stats = gradinit(model, train, lr=lr, iters=20, scale_lr=0.05, gamma=1.0, alpha_floor=0.01)
    after = loss_after_one_step(model, lr, pairs)

    assert not model.training, "the model's mode is restored"
    assert torch.equal(model.stages[1][0].norm1.running_var, running), "running statistics are restored"
    alpha = stats["alpha"]
    for name, p in model.named_parameters():
        if name in alpha:
            assert p.norm().item() == pytest.approx(alpha[name] * init[name].norm().item(), rel=1e-5), name
            assert torch.allclose(p, alpha[name] * init[name]), f"{name} is a multiple of its initial value"
            assert alpha[name] >= (0.0 if name.endswith("bias") else 0.01)
        else:
            assert init[name].abs().sum() == 0 and torch.equal(p, init[name]), f"only zero tensors keep alpha=1: {name}"
    assert "stem.0.weight" in alpha and "stages.0.0.norm1.weight" in alpha and "classifier.weight" in alpha
    assert stats["alpha_max"] - stats["alpha_min"] > 0.1, "the scales moved"
    assert after < before - 0.005, f"one-step loss {before:.4f} -> {after:.4f}"


def test_gradient_norm_constraint_is_minimised_when_violated():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))

    def gnorm() -> float:
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        return float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))

    start = gnorm()
    assert start > 1e-3
    stats = gradinit(model, [(x, y)], lr=0.1, gamma=1e-3, iters=15, scale_lr=0.05)
    assert stats["constraint_steps"] == 15 and math.isnan(stats["step_loss"])  # no objective step
    assert gnorm() < 0.8 * start


def test_adam_variant_and_floors():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Dropout(0.5), nn.Linear(4 * 8 * 8, 10))
    data = [(torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))) for _ in range(3)]
    stats = gradinit(model, data, lr=1e-3, inner_optimizer="adam", gamma=1e9, iters=8, scale_lr=0.2,
                     alpha_floor=0.3)
    assert stats["constraint_steps"] == 0 and math.isfinite(stats["step_loss"])
    floors = {n: 0.0 if n.endswith("bias") else 0.3 for n in stats["alpha"]}
    assert all(a >= floors[n] - 1e-7 for n, a in stats["alpha"].items())
    assert model[4].training and model[1].training, "modes restored (train)"


def test_option_errors():
    model = nn.Linear(3, 2)
    data = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))]
    with pytest.raises(ValueError, match="gradinit_iters"):
        gradinit(model, data, lr=0.1, iters=0)
    with pytest.raises(ValueError, match="inner_optimizer"):
        gradinit(model, data, lr=0.1, inner_optimizer="rmsprop")
    with pytest.raises(ValueError, match="gradinit_min_scale"):
        gradinit(model, data, lr=0.1, alpha_floor=1.5)
    with pytest.raises(ValueError, match="no batches"):
        gradinit(model, [], lr=0.1, iters=1)
    assert inner_optimizer_for("nesterov") == "sgd" and inner_optimizer_for("adamw") == "adam"
    with pytest.raises(ValueError, match="gradinit"):
        inner_optimizer_for("lion")


def test_retrain_callback_runs_on_fresh_runs_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    data = [(torch.randn(8, 5), torch.randint(0, 3, (8,))) for _ in range(2)]
    lines: list[str] = []
    ctx = SimpleNamespace(resumed=True, model=model, train_loader=data, ema=None, out=lines.append,
                          cfg=SimpleNamespace(lr=0.1, opt="momentum", momentum=0.9),
                          info=SimpleNamespace(distributed=False, is_main=True, device=torch.device("cpu")))
    before = copy.deepcopy(model.state_dict())
    cb = GradInitCallback(iters=3, scale_lr=0.1, gamma=1e9)
    cb.on_start(ctx)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not lines
    ctx.resumed = False
    cb.on_start(ctx)
    assert not torch.equal(before["0.weight"], model[0].weight) and lines[0].startswith("gradinit: 3 iterations")
    row: dict = {}
    cb.on_epoch_end(ctx, row)
    assert row["gradinit_iters"] == 3.0 and "gradinit_alpha_min" in row
    again: dict = {}
    cb.on_epoch_end(ctx, again)
    assert again == {}, "reported once"
    restored = GradInitCallback()
    restored.load_state_dict(cb.state_dict())
    assert restored.stats == cb.stats


def test_second_order_term_is_differentiated_unless_first_order():
    data = [(torch.randn(16, 6, generator=torch.Generator().manual_seed(i)), torch.arange(16) % 3) for i in range(2)]

    def run(first_order: bool) -> dict:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
        return gradinit(model, data, lr=0.5, gamma=1e9, iters=4, scale_lr=0.05, first_order=first_order)["alpha"]

    full, first = run(False), run(True)
    assert full.keys() == first.keys()
    assert max(abs(full[k] - first[k]) for k in full) > 1e-4, "d/dα of −η·g(α) changes the scales"


@pytest.mark.parametrize("name", sorted(FIRST_STEP))
def test_first_step_model_is_the_timm_optimizers_first_step(name):
    """η·A[g] (Zhu et al. Eq. 1) must be the step the optimizer really takes first: run timm's optimizer."""
    from timm.optim import create_optimizer_v2

    torch.manual_seed(0)
    weights = [nn.Parameter(torch.randn(4, 3, 3, 3)), nn.Parameter(torch.randn(7))]
    grads = [torch.randn_like(w) for w in weights]
    start = [w.detach().clone() for w in weights]
    opt = create_optimizer_v2(weights, opt=name, lr=0.01, weight_decay=0.0, momentum=0.8)
    for w, g in zip(weights, grads):
        w.grad = g.clone()
    opt.step()
    inner, factor = first_step(name, 0.8)
    for w, w0, g in zip(weights, start, grads):
        expected = -0.01 * factor * (g if inner == "sgd" else g.sign())
        torch.testing.assert_close(w.detach() - w0, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["lamb", "novograd", "adafactor", "nadam", "lion"])
def test_optimizers_without_a_first_step_model_are_refused_in_one_line(name):
    from train.methods import MethodsConfig
    from train.retrain import RetrainConfig

    with pytest.raises(ValueError) as info:
        RetrainConfig(opt=name, methods=MethodsConfig(gradinit=True))
    msg = str(info.value)
    assert f"methods.gradinit: no first-step model for opt '{name}'" in msg
    assert "valid opt with gradinit: adagrad, adam, adamax, adamw, adan" in msg


def test_adam_target_takes_objective_steps_at_the_default_gamma(digits8):
    """The ℓ1 gradient norm of this 20k-weight WRN is ~11: γ = 1 (the SGD setting) leaves GradInit with constraint
    steps only; the Adam default (γ = 1000, the authors' Transformer setting) takes objective steps."""
    train, _ = digits8
    model = small_wrn()
    grads = torch.autograd.grad(F.cross_entropy(model.train()(next(iter(train))[0]), next(iter(train))[1]),
                                list(model.parameters()))
    assert 1.0 < sum(float(g.abs().sum()) for g in grads) < 1e3
    stats = gradinit(small_wrn(), train, lr=1e-3, inner_optimizer="adam", iters=3)
    assert stats["iters"] - stats["constraint_steps"] == 3 and math.isfinite(stats["step_loss"])
    stats = gradinit(small_wrn(), train, lr=1e-3, inner_optimizer="adam", gamma=1.0, iters=3)
    assert stats["constraint_steps"] == 3


@pytest.mark.parametrize("normalize", [True, False])
def test_sgd_step_is_normalised_by_default_as_in_the_authors_cifar_scripts(normalize):
    """One objective iteration's step loss equals L(S̃; θ − η·d) computed here by hand, with d = g/‖g‖₂ (the
    default for an SGD target, the official ``--gradinit-normalize-grad``) or d = g."""
    xs = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    xn = torch.randn(8, 6, generator=torch.Generator().manual_seed(2))
    ys, yn = torch.arange(8) % 3, (torch.arange(8) + 1) % 3
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    ref = copy.deepcopy(model)
    stats = gradinit(model, [(xs, ys), (xn, yn)], lr=0.5, gamma=1e9, iters=1,
                     normalize_grad=None if normalize else False)
    grads = torch.autograd.grad(F.cross_entropy(ref(xs), ys), list(ref.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads)) if normalize else torch.tensor(1.0)
    with torch.no_grad():
        for p, g in zip(ref.parameters(), grads):
            p.sub_(0.5 * g / norm)
        xt, yt = torch.cat([xs[:4], xn[:4]]), torch.cat([ys[:4], yn[:4]])
        expected = float(F.cross_entropy(ref(xt), yt))
    assert stats["step_loss"] == pytest.approx(expected, rel=1e-5)


def test_normalised_step_is_refused_for_adam_targets():
    from train.config_base import FieldError
    from train.methods import MethodsConfig

    with pytest.raises(ValueError, match="gradinit_normalize_grad"):
        gradinit(nn.Linear(3, 2), [(torch.randn(4, 3), torch.arange(4) % 2)], inner_optimizer="adam",
                 normalize_grad=True, iters=1)
    with pytest.raises(FieldError, match="gradinit_normalize_grad"):
        MethodsConfig(gradinit=True, gradinit_normalize_grad=True).check_optimizer("adamw")
