"""The training engine: learning happens, the plain SGD loop bit for bit, divergence stops training (per step or
per epoch), fp16 loss scaling, SGD groups, cosine schedule."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import space
from train import (
    Engine,
    NonFiniteLossError,
    cosine_factor,
    create_precision,
    evaluate_accuracy,
    make_cosine_scheduler,
    make_loaders,
    make_sgd,
)


def test_loss_decreases_on_digits(digits, one_thread):
    torch.manual_seed(0)
    model = space.build_model(space.wrn(10, 1, input_size=16), num_classes=10, in_chans=1)
    train, val = make_loaders(digits, batch_size=32, val_fraction=0.2, seed=0)
    opt = make_sgd(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    engine = Engine(model=model, optimizer=opt, device="cpu",
                    scheduler=make_cosine_scheduler(opt, total_steps=2 * len(train)))
    before = evaluate_accuracy(model, val, device="cpu")
    epochs = [engine.train_epoch(train) for _ in range(2)]
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
        Engine(model=model, optimizer=opt, device="cpu").train_epoch(loader)
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


def test_engine_epoch_equals_a_hand_written_sgd_loop_bit_for_bit(digits, one_thread):
    """The proxy's numbers stay those of the plain loop: zero_grad, forward, backward, clip, step, schedule."""
    torch.manual_seed(0)
    model = space.build_model(space.wrn(10, 0.5, input_size=16), num_classes=10, in_chans=1)
    twin = copy.deepcopy(model)
    loaders = [make_loaders(digits, batch_size=64, val_fraction=0.2, seed=1)[0] for _ in range(2)]
    opt, twin_opt = (make_sgd(m, lr=0.1, momentum=0.9, weight_decay=5e-4) for m in (model, twin))
    steps = 2 * len(loaders[0])
    engine = Engine(model=model, optimizer=opt, device="cpu", grad_clip=1.0,
                    scheduler=make_cosine_scheduler(opt, total_steps=steps))
    twin_sched = make_cosine_scheduler(twin_opt, total_steps=steps)
    for _ in range(2):
        got = engine.train_epoch(loaders[0])
        loss_sum, n = 0.0, 0
        for x, y in loaders[1]:
            twin_opt.zero_grad()
            loss = F.cross_entropy(twin(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
            twin_opt.step()
            twin_sched.step()
            loss_sum, n = loss_sum + float(loss.detach()) * len(y), n + len(y)
        assert got["loss"] == loss_sum / n and got["images"] == n
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    assert engine.num_updates == steps


def test_epoch_check_finishes_the_epoch_and_sums_over_ranks():
    """``nan_check="epoch"`` (retraining) runs the epoch through and raises once, from the ranks' summed loss."""
    steps = []
    loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    two_ranks = lambda values: [2 * float(v) for v in values]  # noqa: E731  (two identical ranks)
    model = nn.Linear(4, 3)
    engine = Engine(model=model, optimizer=make_sgd(model, lr=0.1, momentum=0.0, weight_decay=0.0), device="cpu",
                    nan_check="epoch", reduce=two_ranks, on_step_end=steps.append)
    out = engine.train_epoch(loader)
    assert out["images"] == 48 and len(steps) == 3
    assert out["loss"] == pytest.approx(sum(float(s) for s in steps) / 3)  # the mean is unchanged by equal ranks
    nan_model = _NaNModel()
    engine = Engine(model=nan_model, optimizer=make_sgd(nan_model, lr=0.1, momentum=0.0, weight_decay=0.0),
                    device="cpu", nan_check="epoch", on_step_end=steps.append)
    with pytest.raises(NonFiniteLossError, match="epoch of 3 iterations"):
        engine.train_epoch(loader)
    assert len(steps) == 6 and engine.num_updates == 3
    with pytest.raises(ValueError, match="nan_check"):
        Engine(model=model, optimizer=engine.optimizer, device="cpu", nan_check="sometimes")


def test_fp16_hooks_see_unscaled_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    ref = copy.deepcopy(model)
    F.cross_entropy(ref(x), y).backward()
    seen = {}
    engine = Engine(model=model, optimizer=make_sgd(model, lr=0.1, momentum=0.9, weight_decay=0.0), device="cpu",
                    precision=create_precision("fp16", torch.device("cpu")), grad_clip=100.0,
                    after_backward=lambda: seen.update(grad=model[2].weight.grad.clone()))
    engine.train_epoch([(x, y)])
    assert engine.precision.scaler.get_scale() > 1000  # the loss really was scaled for the backward
    assert float(seen["grad"].norm() / ref[2].weight.grad.norm()) == pytest.approx(1.0, abs=0.01)
