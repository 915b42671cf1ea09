"""Proxy-accuracy evaluator on digits: learns, reports every epoch, deterministic, checks the input size."""
from __future__ import annotations

import warnings

import pytest
import torch

import space
from evaluators import AccuracyEvaluator

ARCH = space.wrn(10, 1, input_size=16)


def test_two_epochs_learn_and_report_each_epoch(digits, one_thread):
    reports: list[dict] = []
    ev = AccuracyEvaluator(data=digits, epochs=5, batch_size=32, threads=1)
    out = ev.evaluate(ARCH, budget=2, report=reports.append)
    assert out["val_acc"] > 0.5  # chance is 0.1
    assert set(out) == {"val_acc", "val_loss", "train_loss", "epochs", "train_seconds"} and out["epochs"] == 2
    assert [r["epoch"] for r in reports] == [1, 2]
    assert set(reports[0]) == {"epoch", "val_acc", "val_loss", "train_loss", "train_acc", "lr"}
    assert reports[0]["lr"] == pytest.approx(0.05, rel=0.05) and reports[1]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert reports[-1]["val_acc"] == out["val_acc"] and reports[1]["val_loss"] < reports[0]["val_loss"]


def test_same_seed_same_result_and_caller_rng_untouched(digits, one_thread):
    ev = AccuracyEvaluator(data=digits, epochs=1, batch_size=64, threads=1, seed=3)
    state = torch.get_rng_state()
    a, b = ev.evaluate(ARCH), ev.evaluate(ARCH)
    assert torch.equal(state, torch.get_rng_state())
    assert {k: v for k, v in a.items() if k != "train_seconds"} == {k: v for k, v in b.items() if k != "train_seconds"}
    c = AccuracyEvaluator(data=digits, epochs=1, batch_size=64, threads=1, seed=4).evaluate(ARCH)
    assert c["val_loss"] != a["val_loss"]


def test_input_size_must_match(digits):
    ev = AccuracyEvaluator(data=digits)
    with pytest.raises(ValueError, match="arch.input_size.*16"):
        ev.evaluate(space.wrn(10, 1, input_size=32))


def test_bad_settings(digits):
    with pytest.raises(ValueError, match="accuracy.val_fraction"):
        AccuracyEvaluator(data=digits, val_fraction=0.0)
    with pytest.raises(ValueError, match="accuracy.device"):
        AccuracyEvaluator(data=digits, device="tpu")
    with pytest.raises(ValueError, match="budget"):
        AccuracyEvaluator(data=digits).evaluate(ARCH, budget=0)


def test_bf16_and_channels_last_train_like_fp32(digits, one_thread):
    """The proxy runs through the same engine as retraining: bf16 autocast and channels_last on request."""
    runs = {name: AccuracyEvaluator(data=digits, epochs=2, batch_size=32, threads=1, **kw).evaluate(ARCH)
            for name, kw in {"ref": {}, "cl": {"channels_last": True}, "bf16": {"amp": "bf16"}}.items()}
    ref = runs.pop("ref")
    assert ref["val_acc"] > 0.5
    for name, run in runs.items():  # measured: train losses 1.146 (fp32), 1.159 (channels_last), 1.143 (bf16)
        assert run["train_loss"] != ref["train_loss"], name  # other kernels / bf16 really ran ...
        assert run["train_loss"] == pytest.approx(ref["train_loss"], rel=0.03), name  # ... and trained alike
        assert abs(run["val_acc"] - ref["val_acc"]) < 0.05, name
    with pytest.raises(ValueError, match="accuracy.amp"):
        AccuracyEvaluator(data=digits, amp="fp8")


@pytest.mark.parametrize("rule, batch, lr, warmup", [("linear", 256, 0.2, 5), ("linear", 8192, 0.8, 5),
                                                     ("none", 256, 0.1, 0), ("linear", 64, 0.05, 0)])
def test_the_search_proxy_scales_lr_by_the_rule_and_warms_up_only_when_it_rises(rule, batch, lr, warmup):
    """Values by hand: 0.1 tuned at 128; linear up to the critical batch 1024 (0.8), flat above; Goyal et al.'s
    5 warm-up epochs only when the lr went up."""
    from evaluators.base import RunContext, build_evaluator
    from search.config import parse_config
    from train.data import load_dataset

    proxy = parse_config({"proxy": {"lr": 0.1, "batch_size": batch, "epochs": 1,
                                    "methods": {"lr_rule": rule}}}).proxy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # past lr_max_batch the rule warns (once per process; tested in tests/train)
        ev = build_evaluator("accuracy", RunContext(data=load_dataset("digits"), settings=proxy))
    assert ev.lr == pytest.approx(lr) and ev.warmup_epochs == warmup
