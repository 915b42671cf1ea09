"""What every zero-cost proxy shares: a seeded scratch copy of the model, the batch checks, the scored layers."""
from __future__ import annotations

import contextlib
import copy
import numbers
from typing import Callable, Iterator

import torch
import torch.nn as nn

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_batch(batch: Batch, *, min_size: int = 1) -> Batch:
    """``(x, y)``: ``x`` a floating tensor with a batch dimension of at least ``min_size``, ``y`` as long."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(f"batch: must be a pair (x, y) of tensors, got {type(batch).__name__}")
    x, y = batch
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError("batch: x must be a floating tensor of shape (N, ...)")
    if not isinstance(y, torch.Tensor) or y.dim() < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"batch: y must be a tensor with as many rows as x ({x.shape[0]})")
    if x.shape[0] < min_size:
        raise ValueError(f"batch: needs at least {min_size} samples, got {x.shape[0]}")
    return x, y


def weight_layers(net: nn.Module) -> list[nn.Module]:
    """The layers whose weights are scored, in module order: every ``nn.Conv2d`` and ``nn.Linear`` (subclasses
    included), as the released code's ``get_layer_metric_array`` selects them."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def on_model(net: nn.Module, batch: Batch) -> Batch:
    """``batch`` moved to the device of ``net``'s first floating parameter, ``x`` cast to its dtype."""
    param = next((p for p in net.parameters() if p.is_floating_point()), None)
    x, y = batch
    if param is None:
        return x, y
    return x.to(device=param.device, dtype=param.dtype), y.to(device=param.device)


def _cuda_indices(model: nn.Module, batch: Batch) -> list[int]:
    tensors = [*model.parameters(), *model.buffers(), *batch]
    return sorted({t.device.index or 0 for t in tensors if t.is_cuda})


@contextlib.contextmanager
def scratch_copy(model: nn.Module, batch: Batch, *, seed: int) -> Iterator[nn.Module]:
    """A deep copy of ``model`` in training mode with every parameter trainable, inside a forked RNG seeded with
    ``seed``: the caller's model, its train/eval flag and the caller's RNG state are left as they were.

    Training mode is the authors' setting (they score freshly built networks; fisher sets it explicitly), so batch
    norm uses the batch's statistics and a score does not depend on the flag the caller's model happens to carry.
    Only the generators of the devices in use are seeded (``torch.manual_seed`` would also queue a seed for every
    CUDA device not yet started, outside the fork).
    """
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"seed: must be an int, got {seed!r}")
    seed = int(seed)
    cuda = _cuda_indices(model, batch)
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        net = copy.deepcopy(model)
        net.train()
        net.requires_grad_(True)
        net.zero_grad(set_to_none=True)
        yield net
