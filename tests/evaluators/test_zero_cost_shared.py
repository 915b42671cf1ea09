"""``score_all`` computes several proxies from shared passes: every number equals the proxy's own function (one
call per proxy, each on its own copy), with fewer forward passes, whatever subset is asked for."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from evaluators.zero_cost import list_proxies, score, score_all
from space import build_model, nb201

NETWORK_PROXIES = [n for n in list_proxies() if n not in ("params", "macs")]


def _dropout_net() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Dropout(0.3), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1), nn.Hardsigmoid(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 5))


def _nb201_net() -> nn.Module:
    torch.manual_seed(0)
    return build_model(nb201(("conv3x3", "skip", "conv1x1", "avg_pool", "conv3x3", "none")), num_classes=5,
                       in_chans=3)


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


@pytest.mark.parametrize("make", [_dropout_net, _nb201_net])
@pytest.mark.parametrize("seed", [0, 3])
def test_every_score_equals_its_own_function(make, seed):
    net, batch = make(), _batch()
    shared = score_all(list_proxies(), net, batch, seed=seed)
    assert list(shared) == list_proxies()
    for name in list_proxies():
        # rel 1e-6: with grasp asked, the pass runs on grasp's twice-differentiable Hardsigmoid (same function)
        assert shared[name] == pytest.approx(score(name, net, batch, seed=seed), rel=1e-6, abs=1e-12), name


@pytest.mark.parametrize("subset", [["fisher"], ["snip", "grad_norm"], ["grasp", "fisher"], ["naswot"],
                                    ["jacob_cov"], ["synflow", "jacob_cov", "snip"]])
def test_any_subset_equals_its_own_functions(subset):
    net, batch = _nb201_net(), _batch()
    shared = score_all(subset, net, batch)
    assert list(shared) == subset
    for name in subset:
        assert shared[name] == pytest.approx(score(name, net, batch), rel=1e-9, abs=1e-12), name


def test_a_network_whose_output_ignores_its_input_scores_nan_jacob_cov():
    torch.manual_seed(0)
    net, batch = build_model(nb201(("none",) * 6), num_classes=5, in_chans=3), _batch()  # every path to the output cut
    assert math.isnan(score("jacob_cov", net, batch))
    shared = score_all(NETWORK_PROXIES, net, batch)
    assert math.isnan(shared["jacob_cov"]) and all(math.isfinite(shared[k]) for k in ("grad_norm", "snip", "synflow"))


def test_passes_are_shared():
    net, batch = _nb201_net(), _batch()
    calls = []
    net.register_forward_hook(lambda *a: calls.append(1))  # deep copies keep it, so every copy's forward counts
    for name in NETWORK_PROXIES:
        score(name, net, batch)
    separate = len(calls)
    calls.clear()
    score_all(NETWORK_PROXIES, net, batch)
    assert (separate, len(calls)) == (len(NETWORK_PROXIES), 3)  # loss-based, kernel-based, synflow


def test_bad_names_and_undefined_proxies_fail_as_score_does():
    net, batch = _dropout_net(), _batch()
    with pytest.raises(ValueError, match="names: unknown zero-cost proxy 'nope'; valid: synflow"):
        score_all(["snip", "nope"], net, batch)
    no_relu = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.LazyLinear(5))
    no_relu(batch[0])
    with pytest.raises(ValueError, match="naswot needs ReLU-family modules"):
        score_all(["jacob_cov", "naswot"], no_relu, batch)
