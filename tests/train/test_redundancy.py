"""Gradient-matrix redundancy: a layer whose loss sees only a rank-2 projection of its output has
rank-2 gradients; the proportional, clipped budget meets its target; Taylor pruning with it."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from space import Arch, Stage, Stem, build_model
from space.complexity import count_complexity
from train.compress import (
    GradientRedundancy,
    TaylorPruner,
    allocate,
    analyse,
    energy_rank,
    group_redundancy,
    redundancy_widths,
)


class _TwoHeads(nn.Module):
    """Two 1×1 convs on the same input: the loss sees a fixed rank-2 projection of ``low``'s 16 outputs
    and all 16 outputs of ``full``."""

    def __init__(self) -> None:
        super().__init__()
        self.low = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.full = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.register_buffer("proj", torch.randn(2, 16))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = torch.einsum("kc,bchw->bkhw", self.proj, self.low(x))
        return low, self.full(x)


def test_rank_two_gradients_give_the_expected_redundancy():
    model = _TwoHeads()
    tracker = GradientRedundancy(model)
    assert set(tracker.modules) == {"low", "full"}
    for _ in range(5):
        x = torch.randn(8, 8, 6, 6)
        low, full = model(x)
        model.zero_grad()
        (F.mse_loss(low, torch.randn_like(low)) + F.mse_loss(full, torch.randn_like(full))).backward()
        tracker.accumulate()
    red = tracker.redundancy(tau=0.9)
    assert red["low"].d == 16 and red["low"].k <= 2 and red["low"].rho >= 1 - 2 / 16
    assert torch.linalg.matrix_rank(tracker.gram["low"], rtol=1e-6) == 2  # rank 2 over all batches (float32 noise)
    assert red["full"].k >= 8 and red["full"].rho <= 0.5


def test_energy_rank():
    assert energy_rank(torch.tensor([9.0, 1.0, 0.0]), 0.9) == 1
    assert energy_rank(torch.tensor([5.0, 4.0, 1.0]), 0.9) == 2
    assert energy_rank(torch.tensor([1.0, 1.0, 1.0, 1.0]), 1.0) == 4
    assert energy_rank(torch.zeros(3), 0.9) == 0
    with pytest.raises(ValueError, match="tau"):
        energy_rank(torch.ones(2), 0.0)


def test_allocate_is_proportional_clipped_and_meets_the_target():
    sizes = {"a": 100, "b": 100, "c": 100}
    rho = {"a": 0.8, "b": 0.4, "c": 0.0}

    def cost(ratios):
        return sum(round(sizes[u] * (1 - r)) for u, r in ratios.items())

    ratios = allocate(rho, cost, 240)
    assert 235 <= cost(ratios) <= 240 and ratios["c"] == 0.0
    assert ratios["a"] == pytest.approx(2 * ratios["b"], abs=0.01)
    ratios = allocate(rho, cost, 160, max_ratio=0.9)
    assert ratios["a"] == 0.9 and cost(ratios) <= 160  # a is clipped, b takes the rest
    assert allocate(rho, cost, 400) == {"a": 0.0, "b": 0.0, "c": 0.0}
    with pytest.raises(ValueError, match="still exceeds the target"):
        allocate(rho, cost, 100, max_ratio=0.5)
    with pytest.raises(ValueError, match="zero redundancy"):
        allocate({"a": 0.0}, cost, 10)


def test_redundancy_budget_drives_taylor_pruning_to_the_target():
    arch = Arch(stem=Stem(width=16), stages=(Stage("basic", 2, 16, 1, order="pre"),
                                             Stage("basic", 2, 32, 2, order="pre")), input_size=12)
    model = build_model(arch, num_classes=5, in_chans=1)
    structure = analyse(model)
    tracker = GradientRedundancy(model)
    pruner = TaylorPruner(model, structure)
    for _ in range(3):
        x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 5, (16,))
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        tracker.accumulate()
        pruner.accumulate()
    layers = tracker.redundancy(0.9)
    rho = group_redundancy(structure, layers)
    assert set(rho) == set(structure.groups) and all(0 <= r <= 1 for r in rho.values())
    full = structure.cost()["macs"]
    widths = redundancy_widths(structure, layers, 0.6 * full)
    pruner.prune_to_widths(widths)
    assert pruner.sizes() == {**structure.sizes(), **widths}
    _, small = pruner.finalize()
    got = count_complexity(small, input_size=12, in_chans=1)["macs"]
    assert 0.57 * full <= got <= 0.6 * full
