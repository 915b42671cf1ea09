"""Activation choices: ELU (Clevert et al. 2016, α=1), ReLU, and the rest of timm's factory."""
from __future__ import annotations

import math

import pytest
import torch
from timm.layers import get_act_layer

from space import ACTIVATIONS

TIMM_NAMES = ("relu6", "leaky_relu", "gelu", "silu", "swish", "mish", "hard_swish", "hard_sigmoid", "sigmoid",
              "tanh", "selu", "celu", "prelu", "hard_mish")


def test_elu_alpha_one():
    elu = ACTIVATIONS.get("elu")()
    assert elu.alpha == 1.0
    x = torch.tensor([0.0, 1e-3, 0.5, 3.0, 100.0], dtype=torch.float64)
    torch.testing.assert_close(elu(x), x)  # identity for x >= 0, f(0) = 0
    neg = torch.tensor([-1e-3, -1.0, -2.0], dtype=torch.float64)
    torch.testing.assert_close(elu(neg), torch.expm1(neg))  # α(e^x − 1), α = 1
    assert elu(torch.tensor(-1.0)).item() == pytest.approx(math.exp(-1) - 1)
    far = elu(torch.tensor([-20.0, -50.0, -1e4], dtype=torch.float64))
    assert torch.all(far >= -1) and far[0] > -1 and torch.all(far + 1 < 1e-8)  # saturates at −α = −1
    x = torch.tensor([-1e-6, 1e-6], dtype=torch.float64, requires_grad=True)
    elu(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0)  # C¹ at 0 for α=1


def test_relu():
    relu = ACTIVATIONS.get("relu")()
    x = torch.tensor([-3.0, -1e-6, 0.0, 2.5])
    torch.testing.assert_close(relu(x.clone()), torch.tensor([0.0, 0.0, 0.0, 2.5]))
    assert relu.inplace  # in place, as the WRN/ResNet reference code


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_registry_exposes_timm_activation(name):
    assert name in ACTIVATIONS
    assert ACTIVATIONS.get(name) is get_act_layer(name)
    act = ACTIVATIONS.get(name)()
    x = torch.linspace(-3, 3, 13)
    y = act(x.clone())
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.equal(y, x)


def test_every_registered_activation_is_a_module_factory():
    assert {"relu", "elu", *TIMM_NAMES} <= set(ACTIVATIONS.names())
    for name in ACTIVATIONS.names():
        act = ACTIVATIONS.get(name)()
        assert isinstance(act, torch.nn.Module), name
        assert act(torch.randn(2, 3, 4, 4)).shape == (2, 3, 4, 4), name


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match="valid: .*elu.*relu"):
        ACTIVATIONS.get("nope")
