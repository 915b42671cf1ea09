"""Contract tests, parametrised over every registry entry: a choice is tested the moment it is registered.

Each entry may carry ``example`` metadata (Stage keyword overrides) for the small arch used here.
"""
from __future__ import annotations

import logging

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

import space
from space import ACTIVATIONS, ATTENTIONS, BLOCKS, NORMS, Arch, Head, Stage, Stem, build_model, from_yaml

logging.getLogger("fvcore").setLevel(logging.ERROR)


def _arch(**stage_kw) -> Arch:
    kw = dict(block="basic", depth=1, width=16, stride=1, order="post")
    kw.update(stage_kw)
    first = Stage(**kw)
    second = Stage(**{**kw, "stride": 2, "width": kw["width"] * 2})
    return Arch(stem=Stem(width=16, norm_act=True), stages=(first, second), head=Head(), input_size=16)


def _block_arch(entry) -> Arch:
    kw = {"block": entry.name, "order": entry.meta["orders"][0]}
    kw.update(entry.meta.get("example", {}))
    return _arch(**kw)


def _cases():
    for e in BLOCKS:
        yield pytest.param(lambda e=e: _block_arch(e), id=f"block-{e.name}")
    for reg, field in ((NORMS, "norm"), (ATTENTIONS, "attention"), (ACTIVATIONS, "act")):
        for e in reg:
            kw = {field: e.name, **e.meta.get("example", {})}
            yield pytest.param(lambda kw=kw: _arch(**kw), id=f"{field}-{e.name}")


@pytest.mark.parametrize("make", list(_cases()))
def test_choice_contract(make):
    arch = make()
    assert from_yaml(arch.to_yaml()) == arch and from_yaml(arch.to_yaml()).to_yaml() == arch.to_yaml()
    model = build_model(arch, num_classes=5, in_chans=3)
    x = torch.randn(4, 3, arch.input_size, arch.input_size)
    model.train()
    out = model(x)
    assert out.shape == (4, 5) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        out_eval = model(x)
    assert out_eval.shape == (4, 5) and torch.isfinite(out_eval).all()
    flops = FlopCountAnalysis(model, x[:1])
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert flops.total() > 0


def test_registries_are_populated():
    assert "basic" in BLOCKS and "bn" in NORMS and "none" in ATTENTIONS and "relu" in ACTIVATIONS


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError, match="valid: .*bn"):
        NORMS.get("nope")


def test_duplicate_registration_warns():
    reg = space.Registry("thing")
    reg.register("a", object())
    with pytest.warns(UserWarning, match="registered twice"):
        reg.register("A", object())


def test_default_options_do_not_change_identity():
    plain = space.Stage("basic", 1, 16)
    explicit = space.Stage("basic", 1, 16, block_args={"dropout": 0.0})
    a = Arch(stem=Stem(), stages=(plain,))
    b = Arch(stem=Stem(), stages=(explicit,))
    assert a.arch_id == b.arch_id and a.to_yaml() == b.to_yaml()
    c = Arch(stem=Stem(), stages=(space.Stage("basic", 1, 16, block_args={"dropout": 0.1}),))
    assert c.arch_id != a.arch_id
