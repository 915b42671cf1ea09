"""Zero-cost proxies against closed forms, hand-written backprop, finite differences and numpy, plus their promises:
the caller's model, flag and RNG untouched, the same seed giving the same score."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
import torch.nn as nn

import evaluators.zero_cost as zc
from evaluators.zero_cost import (
    fisher,
    grad_norm,
    grasp,
    jacob_cov,
    list_proxies,
    macs,
    naswot,
    naswot_from_codes,
    params,
    score,
    snip,
    synflow,
)


def _abs_chain(weights: list[np.ndarray]) -> float:
    """R = 1ᵀ|W_L|…|W_1|1."""
    v = np.ones(weights[0].shape[1])
    for w in weights:
        v = np.abs(w) @ v
    return float(v.sum())


def _randomise_bn(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.uniform_(-2, 2)
                m.bias.uniform_(-2, 2)
                m.running_mean.uniform_(-2, 2)
                m.running_var.uniform_(0.1, 3)


def test_synflow_of_a_linear_chain_is_depth_times_path_sum():
    # R is degree-1 homogeneous in each of the L layers, so Σ θ ∂R/∂θ = L·R (Euler); batch norm is dropped.
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 6, bias=False),
                        nn.ReLU(), nn.Linear(6, 3, bias=False))
    _randomise_bn(net)
    r = _abs_chain([net[i].weight.detach().double().numpy() for i in (0, 3, 5)])
    assert synflow(net, (torch.randn(7, 5), torch.zeros(7))) == pytest.approx(3 * r, rel=1e-12)


def test_synflow_of_a_1x1_conv_chain_counts_every_pixel():
    net = nn.Sequential(nn.Conv2d(3, 5, 1, bias=False), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 4, 1, bias=False),
                        nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1, bias=False))
    _randomise_bn(net)
    r = 4 * 3 * _abs_chain([net[i].weight.detach().double().flatten(1).numpy() for i in (0, 3, 6)])
    assert synflow(net, (torch.randn(2, 3, 4, 3), torch.zeros(2))) == pytest.approx(3 * r, rel=1e-12)


def test_synflow_is_invariant_to_rescaling_consecutive_layers():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    net.double()  # the rescaled weights are stored exactly enough for a 1e-10 comparison
    batch = (torch.randn(2, 3, 6, 6), torch.zeros(2))
    before = synflow(net, batch)
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[0].bias.mul_(3.0)
        net[2].weight.div_(3.0)
    assert synflow(net, batch) == pytest.approx(before, rel=1e-10)
    with torch.no_grad():
        net[2].weight.div_(3.0)  # one layer alone does change it
    assert synflow(net, batch) != pytest.approx(before, rel=1e-3)


class _SharedInput(nn.Module):
    """A conv output read by a second conv (which saves it for backward) and by BN → ReLU, in place or not."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.conv, self.side, self.bn = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)
        self.relu = nn.ReLU(inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.side(h) + self.relu(self.bn(h))


def test_synflow_without_batchnorm_survives_in_place_activations():
    torch.manual_seed(5)
    plain, in_place = _SharedInput(False), _SharedInput(True)
    in_place.load_state_dict(plain.state_dict())
    batch = (torch.randn(2, 2, 5, 5), torch.zeros(2))
    assert synflow(in_place, batch) == pytest.approx(synflow(plain, batch), rel=1e-12)


def _two_layer(seed: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4)).double()
    return net, (torch.randn(9, 6, dtype=torch.float64), torch.randint(0, 4, (9,)))


def _numpy_backprop(net: nn.Module, batch) -> dict[str, np.ndarray]:
    """Hand-written forward and backward pass of Linear-ReLU-Linear under mean cross-entropy."""
    w1, b1, w2, b2 = (p.detach().numpy() for p in net.parameters())
    x, y = batch[0].numpy(), batch[1].numpy()
    pre = x @ w1.T + b1
    h = np.maximum(pre, 0)
    out = h @ w2.T + b2
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d_out = (p - np.eye(out.shape[1])[y]) / len(x)
    d_pre = (d_out @ w2) * (pre > 0)
    return {"w1": w1, "w2": w2, "dw1": d_pre.T @ x, "dw2": d_out.T @ h, "pre": pre, "d_pre": d_pre,
            "out": out, "d_out": d_out}


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_proxies_match_hand_written_backprop(seed):
    net, batch = _two_layer(seed)
    m = _numpy_backprop(net, batch)
    assert grad_norm(net, batch) == pytest.approx(np.linalg.norm(m["dw1"]) + np.linalg.norm(m["dw2"]), rel=1e-10)
    expected_snip = np.abs(m["w1"] * m["dw1"]).sum() + np.abs(m["w2"] * m["dw2"]).sum()
    assert snip(net, batch) == pytest.approx(expected_snip, rel=1e-10)
    # fisher: per output unit ½ mean_n (a·∂L/∂a)², counted once per weight of that unit (fan-in times)
    expected_fisher = 6 * (0.5 * (m["pre"] * m["d_pre"]) ** 2).mean(0).sum() \
        + 5 * (0.5 * (m["out"] * m["d_out"]) ** 2).mean(0).sum()
    assert fisher(net, batch) == pytest.approx(expected_fisher, rel=1e-10)


def test_fisher_sees_the_activation_before_an_in_place_relu():
    torch.manual_seed(2)
    plain = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4))
    in_place = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(12, 4))
    in_place.load_state_dict(plain.state_dict())
    batch = (torch.randn(5, 2, 4, 4), torch.randint(0, 4, (5,)))
    assert fisher(in_place, batch) == pytest.approx(fisher(plain, batch), rel=1e-6)


@pytest.mark.parametrize("act", [nn.Tanh, nn.Hardsigmoid])  # torch cannot differentiate Hardsigmoid's backward
def test_grasp_matches_finite_differences_of_the_gradient(act):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), act(), nn.Flatten(), nn.Linear(12, 4)).double()
    batch = (torch.randn(6, 2, 4, 4, dtype=torch.float64), torch.randint(0, 4, (6,)))
    weights = [net[0].weight, net[4].weight]

    def gradient() -> list[torch.Tensor]:
        loss = nn.functional.cross_entropy(net(batch[0]), batch[1])
        return [g.detach() for g in torch.autograd.grad(loss, weights)]

    theta = [w.detach().clone() for w in weights]
    g = gradient()
    eps = 1e-5
    shifted = []
    for sign in (1, -1):
        with torch.no_grad():
            for w, t, d in zip(weights, theta, g):
                w.copy_(t + sign * eps * d)
        shifted.append(gradient())
    with torch.no_grad():
        for w, t in zip(weights, theta):
            w.copy_(t)
    hg = [(a - b) / (2 * eps) for a, b in zip(*shifted)]
    expected = sum(float(-(t * h).sum()) for t, h in zip(theta, hg))
    assert abs(expected) > 1e-6
    assert grasp(net, batch) == pytest.approx(expected, rel=1e-6)


class _Codes(nn.Module):
    """Two ReLU layers (one in place) reading given columns of the input: their codes are the input's signs."""

    def __init__(self, split: int) -> None:
        super().__init__()
        self.split = split
        self.a, self.b = nn.ReLU(), nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x[:, :self.split]), self.b(x[:, self.split:].clone())], 1)


def _hamming_logdet(codes: np.ndarray) -> float:
    d_h = np.abs(codes[:, None, :] - codes[None, :, :]).sum(-1)
    return float(np.linalg.slogdet(codes.shape[1] - d_h)[1])


def test_naswot_is_the_logdet_of_units_minus_hamming_distance():
    codes = np.random.default_rng(0).integers(0, 2, size=(6, 13))
    x = torch.tensor(2.0 * codes - 1.0, dtype=torch.float32)
    expected = _hamming_logdet(codes)
    assert naswot(_Codes(5), (x, torch.zeros(6))) == pytest.approx(expected, abs=1e-9)
    split = [torch.tensor(codes[:, :4]), torch.tensor(codes[:, 4:])]
    assert naswot_from_codes(split) == pytest.approx(expected, abs=1e-9)
    same = torch.tensor(np.repeat(codes[:3], 2, axis=0))  # duplicated samples: K_H singular
    assert naswot_from_codes([same]) == float("-inf")


def test_naswot_needs_relus():
    with pytest.raises(ValueError, match="model: naswot needs ReLU"):
        naswot(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), (torch.randn(4, 3), torch.zeros(4)))


class _HalfSquaredNorm(nn.Module):
    """f(x) = ½‖x‖², so the Jacobian row of each sample is the sample itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.pow(2).flatten(1).sum(1, keepdim=True)


def _hadamard8() -> np.ndarray:
    h = np.array([[1.0]])
    for _ in range(3):
        h = np.block([[h, h], [h, -h]])
    return h  # rows 1..7 have mean 0 and are mutually orthogonal


def _jc(lam: list[float]) -> float:
    k = 1e-5
    return float(-sum(np.log(v + k) + 1 / (v + k) for v in lam))


def test_jacob_cov_on_known_correlation_matrices():
    h = _hadamard8()
    orthogonal = torch.tensor(h[1:5].reshape(4, 2, 2, 2))  # correlation = I: eigenvalues 1, 1, 1, 1
    assert jacob_cov(_HalfSquaredNorm(), (orthogonal, torch.zeros(4))) == pytest.approx(_jc([1] * 4), rel=1e-9)
    pairs = torch.tensor(h[[1, 1, 2, 2]].reshape(4, 8))  # two blocks of ones: eigenvalues 2, 2, 0, 0
    assert jacob_cov(_HalfSquaredNorm(), (pairs, torch.zeros(4))) == pytest.approx(_jc([2, 2, 0, 0]), rel=1e-9)
    constant = torch.tensor(np.vstack([h[1:4], np.ones(8)]))  # a constant row has no correlation
    assert np.isnan(jacob_cov(_HalfSquaredNorm(), (constant, torch.zeros(4))))


def test_baselines_count_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 10))
    batch = (torch.randn(2, 3, 8, 8), torch.zeros(2))
    assert params(net) == (8 * 3 * 9 + 8) + 2 * 8 + (8 * 10 + 10)
    assert macs(net, batch) == 8 * 3 * 9 * 64 + 8 * 10
    assert score("MACS", net, batch) == macs(net, batch)
    with pytest.raises(ValueError, match="batch: macs needs square"):
        macs(net, (torch.randn(2, 3, 8, 6), torch.zeros(2)))


def _dropout_net() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Dropout(0.3), nn.ReLU(),
                        nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(6, 5))
    return net, (torch.randn(8, 3, 6, 6), torch.randint(0, 5, (8,)))


@pytest.mark.parametrize("name", list_proxies())
def test_proxy_leaves_model_flag_and_rng_alone(name):
    net, batch = _dropout_net()
    net.eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    in_eval = score(name, net, batch)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert score(name, net.train(), batch) == pytest.approx(in_eval, rel=1e-6, nan_ok=True)
    assert score(name, net, batch, seed=0) == score(name, net, batch, seed=0) or np.isnan(in_eval)


@pytest.mark.parametrize("name", [n for n in list_proxies() if n not in ("params", "macs")])
def test_seed_reaches_the_dropout_masks(name):
    net, batch = _dropout_net()
    assert score(name, net, batch, seed=0) != score(name, net, batch, seed=1)


def test_bad_input_names_the_field():
    net, batch = _dropout_net()
    with pytest.raises(ValueError, match="name: unknown zero-cost proxy 'nope'; valid: synflow"):
        score("nope", net, batch)
    with pytest.raises(ValueError, match="batch: y must be"):
        snip(net, (batch[0], batch[1][:3]))
    with pytest.raises(ValueError, match="batch: needs at least 2"):
        jacob_cov(net, (batch[0][:1], batch[1][:1]))
    with pytest.raises(ValueError, match="seed: must be an int"):
        grasp(net, batch, seed=1.5)
    assert grad_norm(net, batch, seed=np.int64(3)) == grad_norm(net, batch, seed=3)


def test_docstring_examples_run():
    assert doctest.testmod(zc).failed == 0
