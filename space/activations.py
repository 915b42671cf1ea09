"""Activation choices: ReLU, ELU (Clevert et al. 2016, α=1) and the rest of timm's factory."""
from __future__ import annotations

import functools

import torch.nn as nn
from timm.layers import get_act_layer

from .registry import register_activation

# Hand-registered with fixed, paper-given parameters.
register_activation("relu", functools.partial(nn.ReLU, inplace=True), doc="ReLU")
register_activation("elu", functools.partial(nn.ELU, alpha=1.0),
                    doc="ELU (Clevert et al. 2016): x for x>0, α(exp(x)-1) otherwise; α=1")

# The rest of timm's activation factory, each under its timm name.
for _name in ("relu6", "leaky_relu", "gelu", "silu", "swish", "mish", "hard_swish", "hard_sigmoid",
              "sigmoid", "tanh", "selu", "celu", "prelu", "hard_mish"):
    _layer = get_act_layer(_name)
    if _layer is not None:
        register_activation(_name, _layer, doc=f"timm activation {_name!r}")
