"""BN-init-revisited's optimizer rule (Davis & Frank 2022): one real training step updates γ with lr/100 and
no weight decay, while conv weights get the full lr and weight decay — through the proxy optimizer
(``train.make_sgd`` + ``train.Engine``) and through retrain's timm optimizer and engine."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from space import build_model
from space.norms.bn_revisited import RevisitedBatchNorm2d
from space.presets import wrn
from train import Engine, make_sgd
from train.retrain import (
    DistInfo,
    RetrainConfig,
    RetrainContext,
    create_optimizer,
    create_precision,
    create_scheduler,
    param_groups,
    train_epoch,
)

LR, MOMENTUM, WD = 0.1, 0.9, 5e-4


def revisited_wrn() -> nn.Module:
    arch = wrn(10, 0.5, input_size=8)
    arch = arch.replace(stages=tuple(dataclasses.replace(s, norm="bn_revisited") for s in arch.stages))
    return build_model(arch, num_classes=10, in_chans=1)


def batch() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))]


def check_first_step(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    """Nesterov SGD's first step, Δp = −lr_p·(1+m)·(g + wd_p·p): (lr/100, 0) for γ, (lr, wd) for conv weights."""
    gammas = [m.weight for m in model.modules() if isinstance(m, RevisitedBatchNorm2d)]
    assert len(gammas) >= 6
    names = {id(p): n for n, p in model.named_parameters()}
    for p in gammas:
        n = names[id(p)]
        expected = before[n] - (LR / 100) * (1 + MOMENTUM) * p.grad
        assert torch.allclose(p.detach(), expected, rtol=1e-5, atol=1e-8), n
        assert not torch.allclose(p.detach(), before[n] - LR * (1 + MOMENTUM) * p.grad, atol=1e-8)
    for n, p in model.named_parameters():
        if p.ndim == 4:
            expected = before[n] - LR * (1 + MOMENTUM) * (p.grad + WD * before[n])
            assert torch.allclose(p.detach(), expected, rtol=1e-5, atol=1e-8), n


def test_gamma_rule_through_make_sgd():
    torch.manual_seed(0)
    model = revisited_wrn()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_sgd(model, lr=LR, momentum=MOMENTUM, weight_decay=WD)
    Engine(model=model, optimizer=opt, device="cpu").train_epoch(batch())
    check_first_step(model, before)


def test_gamma_rule_through_retrain_timm_optimizer(tmp_path: Path):
    torch.manual_seed(0)
    model = revisited_wrn()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = RetrainConfig(opt="sgd", lr=LR, momentum=MOMENTUM, weight_decay=WD, epochs=2, tensorboard=False).check()
    opt = create_optimizer(param_groups(model, weight_decay=WD), cfg)
    loader = batch()
    ctx = RetrainContext(cfg=cfg, arch=None, data=None, info=DistInfo(0, 1, 0, torch.device("cpu")), model=model,
                         train_model=model, optimizer=opt, scheduler=create_scheduler(opt, cfg, updates_per_epoch=1),
                         train_loader=loader, precision=create_precision("none", torch.device("cpu")),
                         out_dir=tmp_path, out=lambda s: None)
    train_epoch(ctx, loss_fn=nn.CrossEntropyLoss())
    check_first_step(model, before)
    # later steps keep the ratio: timm's scheduler multiplies each group's lr by its lr_scale
    gamma_lrs = {g["lr"] for g in opt.param_groups if g["lr_scale"] == pytest.approx(0.01)}
    base_lrs = {g["lr"] for g in opt.param_groups if g["lr_scale"] == 1.0}
    assert len(gamma_lrs) == 1 and len(base_lrs) == 1
    assert gamma_lrs.pop() == pytest.approx(base_lrs.pop() / 100)
