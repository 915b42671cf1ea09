"""Unit orders of the ``basic`` block, ``conv_unit`` and the head: which conv/norm/act runs when,
and which tensor each conv reads (forward hooks on the leaf modules).

post: conv→norm→act; pre: norm→act→conv; white_conv (Cho et al., ICCV 2021): norm→conv→act with
the whitening right before every conv, plus one more norm before the classifier.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from space import Arch, Head, Layers, Stage, Stem, build_model, conv_unit
from space.blocks.basic import BasicBlock
from space.norms.iternorm import IterNorm

NORM_TYPES = (nn.BatchNorm2d, IterNorm)


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, NORM_TYPES):
        return "norm"
    if isinstance(module, (nn.ReLU, nn.ELU)):
        return "act"
    return None


class Recorder:
    """Records (name, kind, input tensor, output tensor) for each conv/norm/act call, in call order."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: list[tuple[str, str, torch.Tensor, torch.Tensor]] = []
        self.handles = []
        for name, module in model.named_modules():
            kind = _kind(module)
            if kind == "norm" or (kind is not None and not any(True for _ in module.children())):
                self.handles.append(module.register_forward_hook(self._hook(name, kind)))

    def _hook(self, name: str, kind: str):
        def hook(module, inputs, output):
            self.calls.append((name, kind, inputs[0], output))
        return hook

    @property
    def kinds(self) -> list[str]:
        return [k for _, k, _, _ in self.calls]

    @property
    def names(self) -> list[str]:
        return [n for n, _, _, _ in self.calls]

    def output_of(self, name: str) -> torch.Tensor:
        return next(o for n, _, _, o in self.calls if n == name)

    def input_of(self, name: str) -> torch.Tensor:
        return next(i for n, _, i, _ in self.calls if n == name)


def _run_block(order: str, in_chs: int, out_chs: int, stride: int, norm: str = "bn") -> Recorder:
    block = BasicBlock(in_chs, out_chs, stride, layers=Layers(norm_name=norm, act_name="elu", order=order))
    rec = Recorder(block)
    block.train()(torch.randn(2, in_chs, 8, 8))
    return rec


@pytest.mark.parametrize("order, kinds, names", [
    ("post", ["conv", "norm", "act", "conv", "norm", "act"], ["conv1", "norm1", "act1", "conv2", "norm2", "act2"]),
    ("pre", ["norm", "act", "conv", "norm", "act", "conv"], ["norm1", "act1", "conv1", "norm2", "act2", "conv2"]),
    ("white_conv", ["norm", "conv", "act", "norm", "conv", "act"],
     ["norm1", "conv1", "act1", "norm2", "conv2", "act2"]),
])
def test_basic_block_call_order_identity_shortcut(order, kinds, names):
    rec = _run_block(order, 16, 16, 1)
    assert rec.kinds == kinds and rec.names == names


def test_post_order_data_flow():
    rec = _run_block("post", 8, 16, 2)
    assert rec.names == ["conv1", "norm1", "act1", "conv2", "norm2", "shortcut.0", "shortcut.1", "act2"]
    assert rec.input_of("norm1") is rec.output_of("conv1")
    assert rec.input_of("conv2") is rec.output_of("act1")
    assert rec.input_of("shortcut.1") is rec.output_of("shortcut.0")  # projection conv + norm


def test_pre_order_data_flow():
    rec = _run_block("pre", 8, 16, 2)
    assert rec.names == ["norm1", "act1", "conv1", "norm2", "act2", "conv2", "shortcut"]
    assert rec.input_of("act1") is rec.output_of("norm1")
    assert rec.input_of("conv1") is rec.output_of("act1")
    assert rec.input_of("conv2") is rec.output_of("act2")
    assert rec.input_of("shortcut") is rec.output_of("act1")  # WRN: projection reads the pre-activated input


@pytest.mark.parametrize("norm", ["bn", "iternorm"])
def test_white_conv_whitens_right_before_every_conv(norm):
    rec = _run_block("white_conv", 8, 16, 2, norm=norm)
    assert rec.names == ["norm1", "conv1", "act1", "norm2", "conv2", "shortcut", "act2"]
    assert rec.input_of("conv1") is rec.output_of("norm1")
    assert rec.input_of("norm2") is rec.output_of("act1")
    assert rec.input_of("conv2") is rec.output_of("norm2")
    assert rec.input_of("shortcut") is rec.output_of("norm1")  # the projection conv reads whitened input too
    for name, kind, inp, _ in rec.calls:
        if kind == "conv":
            assert any(inp is out for n, k, _, out in rec.calls if k == "norm"), name


@pytest.mark.parametrize("order, kinds", [
    ("post", ["conv", "norm", "act"]), ("pre", ["norm", "act", "conv"]), ("white_conv", ["norm", "conv", "act"])])
def test_conv_unit_order(order, kinds):
    unit = conv_unit(8, 16, 3, 1, Layers(order=order))
    assert [_kind(m) for m in unit] == kinds
    norm = next(m for m in unit if isinstance(m, nn.BatchNorm2d))
    assert norm.num_features == (16 if order == "post" else 8)  # pre/white_conv normalise the conv input
    assert [_kind(m) for m in conv_unit(8, 16, 3, 1, Layers(order=order), act=False)] == [
        k for k in kinds if k != "act"]


def _model(order: str, norm: str) -> nn.Module:
    stages = (Stage("basic", 1, 16, order=order, norm=norm), Stage("basic", 1, 32, stride=2, order=order, norm=norm))
    arch = Arch(stem=Stem(width=16, norm_act=True), stages=stages, head=Head(), input_size=16)
    return build_model(arch, num_classes=5)


def test_white_conv_classifier_gets_an_extra_whitening():
    model = _model("white_conv", "iternorm")
    assert isinstance(model.final_norm, IterNorm) and model.final_norm.whiten.num_features == 32
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: calls.append(n))
             for n, m in (("stages", model.stages), ("final_norm", model.final_norm), ("pool", model.pool),
                          ("classifier", model.classifier))]
    seen: dict[str, torch.Tensor] = {}

    def keep(key: str, tensor: torch.Tensor) -> None:  # a hook that returns None leaves the output alone
        seen[key] = tensor

    hooks.append(model.pool.register_forward_hook(lambda m, i, o: keep("pool_in", i[0])))
    hooks.append(model.final_norm.register_forward_hook(lambda m, i, o: keep("final_out", o)))
    model.train()(torch.randn(4, 3, 16, 16))
    assert calls == ["stages", "final_norm", "pool", "classifier"]
    assert seen["pool_in"] is seen["final_out"]  # the classifier reads whitened features
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("order, expect", [("post", nn.Identity), ("pre", nn.Sequential)])
def test_head_norm_for_other_orders(order, expect):
    model = _model(order, "bn")
    assert isinstance(model.final_norm, expect)
    if order == "pre":  # WRN: BN-ReLU before pooling
        assert [_kind(m) for m in model.final_norm] == ["norm", "act"]
