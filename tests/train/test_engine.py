"""The training engine: learning happens, divergence stops training, SGD groups, cosine schedule."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import space
from train import (NonFiniteLossError, cosine_factor, evaluate_accuracy, make_cosine_scheduler, make_loaders, make_sgd, train_one_epoch)


def test_loss_decreases_on_digits(digits, one_thread):
    torch.manual_seed(0)
    model = space.build_model(space.wrn(10, 1, input_size=16), num_classes=10, in_chans=1)
    train, val = make_loaders(digits, batch_size=32, val_fraction=0.2, seed=0)
    opt = make_sgd(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = make_cosine_scheduler(opt, total_steps=2 * len(train))
    before = evaluate_accuracy(model, val, device="cpu")
    epochs = [train_one_epoch(model, train, opt, device="cpu", scheduler=sched) for _ in range(2)]
    after = evaluate_accuracy(model, val, device="cpu")
    assert epochs[1]["loss"] < epochs[0]["loss"]
    assert after["loss"] < before["loss"] - 0.5 and after["acc"] > 0.5
    assert epochs[0]["images"] == train.num_samples and epochs[0]["seconds"] > 0
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine reached its end
    assert model.training


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * float("nan")


def test_non_finite_loss_raises_before_any_step():
    model = _NaNModel()
    before = [p.detach().clone() for p in model.parameters()]
    loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    opt = make_sgd(model, lr=0.1, momentum=0.9, weight_decay=0.0)
    with pytest.raises(NonFiniteLossError, match="iteration 0"):
        train_one_epoch(model, loader, opt, device="cpu")
    assert issubclass(NonFiniteLossError, ValueError)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


class _Claiming(nn.Module):
    """Claims its BN γ with lr/100 and no decay, like BN-init-revisited would."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def nas_param_groups(self) -> list[dict]:
        return [{"params": [self.bn.weight], "lr_scale": 0.01, "weight_decay": 0.0}]


def test_sgd_groups_decay_only_weights_and_honour_claims():
    model = nn.Sequential(_Claiming(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    opt = make_sgd(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    claiming, linear = model[0], model[2]
    assert by_param[id(claiming.conv.weight)]["weight_decay"] == 5e-4
    assert by_param[id(linear.weight)]["weight_decay"] == 5e-4
    for p in (claiming.conv.bias, claiming.bn.bias, linear.bias):
        assert by_param[id(p)]["weight_decay"] == 0.0 and by_param[id(p)]["lr"] == 0.1
    gamma = by_param[id(claiming.bn.weight)]
    assert gamma["lr"] == pytest.approx(1e-3) and gamma["weight_decay"] == 0.0
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    sched = make_cosine_scheduler(opt, total_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert gamma["lr"] == pytest.approx(0.01 * by_param[id(linear.weight)]["lr"])  # the ratio survives the schedule


def test_double_claim_rejected():
    inner = _Claiming()

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def nas_param_groups(self) -> list[dict]:
            return [{"params": [inner.bn.weight], "lr_scale": 1.0}]

    with pytest.raises(ValueError, match="claimed twice"):
        make_sgd(Outer(), lr=0.1, momentum=0.9, weight_decay=0.0)


def test_no_momentum_means_no_nesterov():
    opt = make_sgd(nn.Linear(2, 2), lr=0.1, momentum=0.0, weight_decay=0.0)
    assert not opt.defaults["nesterov"]


def test_cosine_with_warmup():
    assert [cosine_factor(s, total_steps=12, warmup_steps=2) for s in (0, 1)] == [0.5, 1.0]
    assert cosine_factor(2, total_steps=12, warmup_steps=2) == pytest.approx(1.0)
    assert cosine_factor(7, total_steps=12, warmup_steps=2) == pytest.approx(0.5)
    assert cosine_factor(12, total_steps=12, warmup_steps=2) == pytest.approx(0.0)
    assert cosine_factor(12, total_steps=12, min_factor=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        make_cosine_scheduler(make_sgd(nn.Linear(2, 2), lr=0.1, momentum=0.9, weight_decay=0.0),
                              total_steps=3, warmup_steps=3)
