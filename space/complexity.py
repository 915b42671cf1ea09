"""Parameters, FLOPs and MACs of a model, and a per-stage table (``nas show``).

A count is a property of the architecture (pycls keeps ``complexity()`` with its models), so it lives in ``space``.

Conventions (reported side by side):

- ``params`` — exact: ``sum(p.numel())`` over the model's (de-duplicated) parameters.
- ``flops`` — fvcore's ``FlopCountAnalysis(...).total()``: one fused multiply-add counts as one
  flop, and batch-norm, adaptive pooling, upsampling etc. are counted too.
- ``macs`` — the papers' convention (WRN, GhostNet, MobileNet tables): multiply-adds of
  convolution and fully-connected layers only, i.e. the sum of fvcore's ``by_operator`` entries
  ``conv``, ``linear``, ``addmm``, ``mm``, ``matmul``, ``bmm`` and ``einsum``.

Everything is measured with one image (batch 1) in eval mode under ``torch.no_grad``; the model's
training flag is restored afterwards.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, Iterator

import torch
import torch.nn as nn

from .errors import check_positive_int

MAC_OPERATORS = ("conv", "linear", "addmm", "mm", "matmul", "bmm", "einsum")
"""fvcore operator names whose counts are multiply-adds of conv/linear/matrix products."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence fvcore's import FutureWarning, tracer warnings and its unsupported-op/uncalled logs."""
    log = logging.getLogger("fvcore.nn.jit_analysis")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _flop_analysis(model: nn.Module, x: torch.Tensor) -> Any:
    with _quiet():
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        analysis.total()  # runs the trace once, inside the quiet block
    return analysis


@contextlib.contextmanager
def _eval_no_grad(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _example_input(model: nn.Module, input_size: int, in_chans: int) -> torch.Tensor:
    check_positive_int(input_size, "input_size")
    check_positive_int(in_chans, "in_chans")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(1, in_chans, input_size, input_size, device=device)


def _macs(by_operator: dict[str, float]) -> int:
    return int(sum(v for k, v in by_operator.items() if k in MAC_OPERATORS))


def count_params(model: nn.Module) -> int:
    """Exact number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_complexity(model: nn.Module, *, input_size: int, in_chans: int) -> dict[str, int]:
    """``{"params", "flops", "macs"}`` of ``model`` on one ``in_chans``×``input_size``² image (see module doc)."""
    x = _example_input(model, input_size, in_chans)
    with _eval_no_grad(model):
        analysis = _flop_analysis(model, x)
        return {"params": count_params(model), "flops": int(analysis.total()),
                "macs": _macs(analysis.by_operator())}


def _table_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Top-level children, with a ``stages`` container expanded into its stages; identities dropped."""
    rows: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if name == "stages" and isinstance(child, (nn.Sequential, nn.ModuleList)):
            rows += [(f"stages.{i}", m) for i, m in child.named_children()]
        elif not isinstance(child, nn.Identity):
            rows.append((name, child))
    return rows


def layer_table(model: nn.Module, *, input_size: int, in_chans: int) -> list[dict[str, Any]]:
    """One row per top-level module (each stage of a ``NasNet`` separately), in forward order.

    Row: ``name``, ``type`` (class name), ``out_shape`` (tuple, batch 1), ``params``, ``macs``
    (conv/linear multiply-adds, as in :func:`count_complexity`).
    """
    x = _example_input(model, input_size, in_chans)
    modules = _table_modules(model)
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []

    def hook(name: str):
        def fn(_m: nn.Module, _inp: Any, out: Any) -> None:
            if name not in shapes:
                order.append(name)
            shapes[name] = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
        return fn

    with _eval_no_grad(model):
        handles = [m.register_forward_hook(hook(n)) for n, m in modules]
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
        per_module = _flop_analysis(model, x).by_module_and_operator()
    lookup = dict(modules)
    called = order + [n for n, _ in modules if n not in shapes]
    return [{"name": n, "type": type(lookup[n]).__name__, "out_shape": shapes.get(n, ()),
             "params": count_params(lookup[n]), "macs": _macs(per_module.get(n, {}))} for n in called]
