"""Learning rate as a function of batch size (Granziol et al. 2022): linear for SGD, square root for
Adam-like optimizers, ``auto`` by optimizer name, and the retrain/proxy hooks."""
from __future__ import annotations

import doctest
import math

import pytest
from timm.optim import list_optimizers

import train.methods.lr_rule as lr_rule_module
from train.methods import MethodRunner, MethodsConfig, optimizer_family, scale_lr
from train.retrain import RetrainConfig
from train.retrain.methods import LrRuleCallback


@pytest.mark.parametrize("batch", [32, 64, 128, 512, 1000])
def test_linear_and_sqrt_ratios(batch):
    ratio = batch / 128
    assert scale_lr(0.1, batch, 128, "sgd", "linear") == pytest.approx(0.1 * ratio)
    assert scale_lr(1e-3, batch, 128, "adamw", "sqrt") == pytest.approx(1e-3 * math.sqrt(ratio))
    assert scale_lr(0.1, batch, 128, "lion", "none") == 0.1
    # an explicit rule ignores the optimizer family
    assert scale_lr(0.1, batch, 128, "adam", "linear") == pytest.approx(0.1 * ratio)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "sgdw", "sgdp", "fusedsgd"])
def test_auto_is_linear_for_sgd(name):
    assert scale_lr(0.1, 512, 128, name) == pytest.approx(0.4)


@pytest.mark.parametrize("name", ["adam", "adamw", "nadam", "radam", "lamb", "adabelief", "adamp", "fusedlamb",
                                  "cadamw", "rmsprop", "adafactor"])
def test_auto_is_sqrt_for_adam_family(name):
    assert scale_lr(1e-3, 512, 128, name) == pytest.approx(2e-3)


def test_auto_refuses_unknown_optimizers_naming_lr_rule():
    for name in ("lion", "muon", "lars", "madgrad", "kron", "adahessian", "nosuchopt"):
        with pytest.raises(ValueError, match="lr_rule") as err:
            scale_lr(0.1, 256, 128, name)
        assert name in str(err.value)
    # every timm optimizer is either in a family or refused with that message
    for name in list_optimizers():
        if optimizer_family(name) is None:
            with pytest.raises(ValueError, match="lr_rule"):
                scale_lr(0.1, 256, 128, name)


def test_bad_arguments():
    with pytest.raises(ValueError, match="lr_rule"):
        scale_lr(0.1, 256, 128, "sgd", "quadratic")
    with pytest.raises(ValueError, match="batch_size"):
        scale_lr(0.1, 0, 128, "sgd")
    with pytest.raises(ValueError, match="lr_base_batch"):
        scale_lr(0.1, 256, 0, "sgd")
    with pytest.raises(ValueError, match="lr"):
        scale_lr(-0.1, 256, 128, "sgd")


def test_retrain_callback_uses_the_global_batch():
    sgd = RetrainConfig(opt="sgd", lr=0.1, batch_size=64)
    assert LrRuleCallback(rule="auto", base_batch=128).configure(sgd, world_size=4).lr == pytest.approx(0.2)
    adamw = RetrainConfig(opt="adamw", lr=1e-3, batch_size=64)
    cfg = LrRuleCallback(rule="auto", base_batch=128).configure(adamw, world_size=4)
    assert cfg.lr == pytest.approx(1e-3 * math.sqrt(2)) and cfg.batch_size == 64 and cfg.opt == "adamw"
    with pytest.raises(ValueError, match="lr_rule"):
        LrRuleCallback(rule="auto").configure(RetrainConfig(opt="lion"), world_size=1)


def test_proxy_runner_scales_and_checks_at_construction():
    assert MethodRunner(MethodsConfig(lr_rule="auto", lr_base_batch=256)).scaled_lr(0.2, 64) == pytest.approx(0.05)
    assert MethodRunner(MethodsConfig()).scaled_lr(0.2, 64) == 0.2
    with pytest.raises(ValueError, match="lr_rule"):
        MethodRunner(MethodsConfig(lr_rule="auto"), optimizer_name="lion")
    assert RetrainConfig(methods={"lr_rule": "sqrt"}).methods == MethodsConfig(lr_rule="sqrt")


def test_docstring_examples():
    result = doctest.testmod(lr_rule_module)
    assert result.attempted >= 3 and result.failed == 0


def test_large_batches_stop_at_the_critical_batch_and_warn_once():
    """Granziol et al. 2022: the rule holds below the critical batch (1024 by default); past it the lr saturates.
    By hand: SGD 0.1 at 128 → 0.1·1024/128 = 0.8 at 8192 (not 6.4); Adam 1e-3 → 1e-3·√8 = 2.8284e-3 (not 8e-3)."""
    lr_rule_module._warned.clear()
    with pytest.warns(UserWarning, match="global batch 8192 is above lr_max_batch 1024") as record:
        assert scale_lr(0.1, 8192, 128, "sgd") == pytest.approx(0.8)
        assert scale_lr(0.1, 8192, 128, "sgd") == pytest.approx(0.8)
    assert len(record) == 1, "warned once"
    with pytest.warns(UserWarning):
        assert scale_lr(1e-3, 8192, 128, "adamw", max_batch=2048) == pytest.approx(1e-3 * 4.0)
    assert scale_lr(0.1, 8192, 128, "sgd", max_batch=8192) == pytest.approx(6.4)
    assert scale_lr(1e-3, 1024, 128, "adam") == pytest.approx(2.8284271e-3)


def test_retrain_rule_adds_goyal_warmup_when_it_raises_the_lr():
    cb = LrRuleCallback(rule="auto", base_batch=128)
    cfg = cb.configure(RetrainConfig(batch_size=256, epochs=30, lr=0.1), world_size=4)  # global 1024
    assert (cfg.lr, cfg.warmup_epochs, cfg.warmup_lr) == (pytest.approx(0.8), 5, 0.1)
    kept = cb.configure(RetrainConfig(batch_size=256, epochs=30, lr=0.1, warmup_epochs=2), world_size=4)
    assert (kept.warmup_epochs, kept.warmup_lr) == (2, 1e-5), "an explicit warm-up is kept"
    short = cb.configure(RetrainConfig(batch_size=256, epochs=3, lr=0.1), world_size=1)
    assert short.warmup_epochs == 2 and short.lr == pytest.approx(0.2)
    lower = cb.configure(RetrainConfig(batch_size=32, epochs=30, lr=0.1), world_size=1)
    assert lower.warmup_epochs == 0 and lower.lr == pytest.approx(0.025), "no warm-up when the lr drops"
    with pytest.raises(ValueError, match="lr_max_batch"):
        LrRuleCallback(max_batch=0)
