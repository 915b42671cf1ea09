"""Unit orders of the ``basic`` block, ``conv_unit`` and the head: which conv/norm/act runs when,
and which tensor each conv reads (forward hooks on the leaf modules).

post: conv→norm→act; pre: norm→act→conv; white_conv (Cho et al., ICCV 2021): norm→conv→act with
the whitening right before every conv, plus one more norm before the classifier.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from space import Arch, Head, Layers, Stage, Stem, build_model, conv_unit
from space.blocks.basic import BasicBlock
from space.errors import SpecError
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


# --------------------------------------------------------------------------- dropout and Cho et al.'s units


class DropRecorder(Recorder):
    """A :class:`Recorder` that also records dropout calls (kind ``drop``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        for name, module in model.named_modules():
            if isinstance(module, nn.Dropout):
                self.handles.append(module.register_forward_hook(self._hook(name, "drop")))


@pytest.mark.parametrize("order, names", [
    ("post", ["conv1", "norm1", "act1", "drop", "conv2", "norm2", "act2"]),
    ("pre", ["norm1", "act1", "conv1", "norm2", "act2", "drop", "conv2"]),
    ("white_conv", ["norm1", "conv1", "act1", "norm2", "drop", "conv2", "act2"]),  # Cho: whitening → dropout → conv
])
def test_basic_block_dropout_position(order, names):
    block = BasicBlock(16, 16, 1, layers=Layers(act_name="elu", order=order), dropout=0.3)
    rec = DropRecorder(block)
    block.train()(torch.randn(2, 16, 8, 8))
    assert rec.names == names
    assert rec.input_of("conv2") is rec.output_of("drop")


def test_white_conv_whitened_statistics_agree_in_train_and_eval():
    """Dropout after the whitening: the tensor the whitening normalises is the same in train and eval,
    so its eval output (running statistics) has the train output's per-channel variance."""
    torch.manual_seed(0)
    block = BasicBlock(16, 16, 1, layers=Layers(order="white_conv", norm_args=(("momentum", 1.0),)), dropout=0.5)
    x = torch.randn(64, 16, 8, 8)
    seen: dict[str, torch.Tensor] = {}
    block.norm2.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o.detach()))
    block.train()(x)
    train_var = seen["out"].var(dim=(0, 2, 3)).mean()
    block.eval()(x)
    eval_var = seen["out"].var(dim=(0, 2, 3)).mean()
    assert abs(train_var.item() - 1.0) < 0.05 and abs(eval_var.item() - train_var.item()) < 0.05


def _cho_wrn_ours(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Cho et al.'s WRN forward, unit "ours", as their models/wrn.py writes it (with its in-place ReLU), reading
    the weights of ``model``: bare stem conv; per unit relu_(x) → N1 → conv1 → relu → N2 → [dropout] → conv2,
    added to x (or to a 1×1 conv of N1(relu(x))); relu_ → N → pool → fc at the end."""
    out = F.conv2d(x, model.stem[0].weight, padding=1)
    for stage in model.stages:
        for unit in stage:
            if unit.shortcut is None:
                h = unit.conv1(unit.norm1(F.relu(out, inplace=True)))  # in place: ``out`` is activated too
            else:
                out = unit.norm1(F.relu(out, inplace=True))
                h = unit.conv1(out)
            h = unit.conv2(unit.drop(unit.norm2(F.relu(h))))
            out = (out if unit.shortcut is None else unit.shortcut(out)) + h
    out = model.final_norm(F.relu(out, inplace=True))
    return model.classifier(out.mean(dim=(2, 3)))


@pytest.mark.parametrize("norm", ["bn", "iternorm"])
def test_white_conv_with_stem_act_is_cho_wrn(norm):
    """Cho et al.'s WRN as it runs equals ``white_conv`` basic blocks after a conv→act stem."""
    torch.manual_seed(0)
    stages = (Stage("basic", 2, 32, order="white_conv", norm=norm), Stage("basic", 1, 64, 2, order="white_conv",
                                                                         norm=norm))
    model = build_model(Arch(stem=Stem(width=16, act=True), stages=stages, input_size=16), num_classes=5).train()
    x = torch.randn(8, 3, 16, 16)
    ours = model(x)
    assert torch.allclose(_cho_wrn_ours(model, x), ours, atol=1e-5)


def test_stem_act_is_conv_then_act():
    res = (Stage("basic", 1, 16, order="white_conv", norm="iternorm"),)
    model = build_model(Arch(stem=Stem(width=16, act=True), stages=res, input_size=16), num_classes=5)
    assert [_kind(m) for m in model.stem] == ["conv", "act"]  # Cho et al.'s ResNet: conv → ReLU, no norm


def test_stem_act_keeps_existing_ids_and_round_trips():
    arch = Arch(stem=Stem(width=16, norm_act=True), input_size=16,
                stages=(Stage("basic", 2, 16, order="white_conv", norm="iternorm"),))
    assert "  act:" not in arch.to_yaml().split("stages:")[0]
    assert arch.arch_id == "149db15cd3f9"  # the id this spec had before the stem had an ``act`` field
    with_act = arch.replace(stem=Stem(width=16, act=True))
    assert Arch.from_yaml(with_act.to_yaml()) == with_act and with_act.arch_id != arch.arch_id
    with pytest.raises(SpecError, match="stem.act"):
        arch.replace(stem=Stem(width=16, norm_act=True, act=True))
