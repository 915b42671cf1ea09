"""Full-scale retraining: timm parts, sharded loader, exact resume, AMP, logs, timm model entry.

Every training run here is a tiny WRN on the bundled digits (1,437 training images, 16×16), one
CPU thread, so runs are bit-reproducible.
"""
from __future__ import annotations

import json

import pytest
import timm
import torch

from space import Arch, Head, Stage, Stem, build_model, get_preset
from train import NonFiniteLossError, TensorLoader, load_dataset
from train.retrain import (
    Callback,
    RetrainConfig,
    ShardedTensorLoader,
    create_optimizer,
    create_scheduler,
    param_groups,
    retrain,
)

from ._callbacks import StopAt

TIMING_KEYS = {"seconds", "images_per_s"}


def tiny(norm: str = "bn", *, dropout: float = 0.0, norm_args: dict | None = None) -> Arch:
    st = [Stage("basic", 1, w, s, norm=norm, order="pre", norm_args=norm_args or {}) for w, s in ((8, 1), (16, 2))]
    return Arch(stem=Stem(width=8), stages=tuple(st), head=Head(dropout=dropout), input_size=16)


def quiet(_: str) -> None:
    pass


def same_history(a: list[dict], b: list[dict]) -> bool:
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]  # noqa: E731
    return strip(a) == strip(b)


# --------------------------------------------------------------------------- loader


def test_sharded_loader_is_tensor_loader_for_one_process_and_a_partition_for_two():
    data = load_dataset("digits")
    n = len(data.train)  # 1437 = 3 × 479: no partial batch, so TensorLoader drops nothing either
    ref = list(TensorLoader(data.train, batch_size=479, shuffle=True, seed=3, pad=data.pad, flip=True))
    one = list(ShardedTensorLoader(data.train, batch_size=479, seed=3, pad=data.pad, flip=True))
    assert len(one) == len(ref) == n // 479
    for (x, y), (rx, ry) in zip(one, ref):
        assert torch.equal(x, rx) and torch.equal(y, ry)  # same order and the same crops/flips
    # two ranks of 64: step t's rank batches concatenate to the one-process batch of 128, augmentation included
    glob = list(ShardedTensorLoader(data.train, batch_size=128, seed=3, pad=data.pad, flip=True))
    r0, r1 = (list(ShardedTensorLoader(data.train, batch_size=64, rank=r, world_size=2, seed=3, pad=data.pad,
                                       flip=True)) for r in (0, 1))
    assert len(r0) == len(r1) == len(glob) == n // 128
    for (x0, y0), (x1, y1), (x, y) in zip(r0, r1, glob):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    # a new epoch is a new permutation
    loader = ShardedTensorLoader(data.train, batch_size=128, seed=3)
    first, second = next(iter(loader))[1], next(iter(loader))[1]
    assert not torch.equal(first, second)


# --------------------------------------------------------------------------- optimizer and schedule


def test_param_groups_follow_timm_decay_rule_and_module_claims():
    model = build_model(tiny("bn_revisited"), num_classes=10, in_chans=1)
    groups = param_groups(model, weight_decay=5e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    gammas = {id(m.weight) for m in model.modules() if hasattr(m, "gamma_lr_scale")}
    for g in groups:
        for p in g["params"]:
            if id(p) in gammas:
                assert (g["lr_scale"], g["weight_decay"]) == (0.01, 0.0)
            elif p.ndim <= 1:
                assert (g["lr_scale"], g["weight_decay"]) == (1.0, 0.0)
            else:
                assert (g["lr_scale"], g["weight_decay"]) == (1.0, 5e-4)
    cfg = RetrainConfig(lr=0.2, opt="sgd", warmup_epochs=0, epochs=4)
    opt = create_optimizer(groups, cfg)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]
    sched = create_scheduler(opt, cfg, updates_per_epoch=10)
    lrs = {g["lr_scale"]: g["lr"] for g in opt.param_groups}
    assert lrs[1.0] == pytest.approx(0.2) and lrs[0.01] == pytest.approx(0.002)  # timm applies lr_scale
    sched.step_update(20)  # half-way through the cosine
    assert {g["lr_scale"]: g["lr"] for g in opt.param_groups}[0.01] == pytest.approx(0.001)


# --------------------------------------------------------------------------- resume


def test_resume_after_a_kill_ends_bit_identical(tmp_path):
    # dropout (torch RNG), mixup/cutmix (numpy RNG), EMA, label smoothing: all must resume exactly
    arch = tiny(dropout=0.2)
    cfg = RetrainConfig(epochs=2, batch_size=96, mixup=0.2, cutmix=0.5, label_smoothing=0.1, ema=True,
                        ema_decay=0.9, warmup_epochs=1, log_interval=0, tensorboard=False)
    straight = retrain(arch, cfg, out_dir=tmp_path / "a", out=quiet)
    with pytest.raises(KeyboardInterrupt):
        retrain(arch, cfg, out_dir=tmp_path / "b", out=quiet, callbacks=[StopAt(1)])
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["rng"]) == 1 and state["rng"][0]["numpy"]["keys"].numel() == 624
    resumed = retrain(arch, cfg, out_dir=tmp_path / "b", resume=True, out=quiet)
    assert same_history(resumed["history"], straight["history"])
    for name in ("model.pt", "model_ema.pt"):
        a = torch.load(tmp_path / "a" / name, weights_only=True)
        b = torch.load(tmp_path / "b" / name, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ema, raw = (torch.load(tmp_path / "a" / n, weights_only=True) for n in ("model_ema.pt", "model.pt"))
    assert not torch.equal(ema["classifier.weight"], raw["classifier.weight"])  # the EMA is a different model


def test_resume_refuses_other_settings_and_fresh_runs_refuse_to_overwrite(tmp_path):
    arch = tiny()
    cfg = RetrainConfig(epochs=1, batch_size=256, log_interval=0, tensorboard=False)
    retrain(arch, cfg, out_dir=tmp_path, out=quiet)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        retrain(arch, cfg, out_dir=tmp_path, out=quiet)
    with pytest.raises(ValueError, match=r"lr 0\.1 → 0\.05"):
        retrain(arch, cfg.replace(lr=0.05), out_dir=tmp_path, resume=True, out=quiet)
    with pytest.raises(ValueError, match="not"):
        retrain(tiny("gn", norm_args={"groups": 4}), cfg, out_dir=tmp_path, resume=True, out=quiet)
    with pytest.raises(ValueError, match="no checkpoint"):
        retrain(arch, cfg, out_dir=tmp_path / "empty", resume=True, out=quiet)
    # resuming a finished run trains nothing and reports the same numbers
    again = retrain(arch, cfg.replace(threads=1, log_interval=5), out_dir=tmp_path, resume=True, out=quiet)
    assert again["test_acc"] == json.loads((tmp_path / "metrics.json").read_text())["test_acc"]


# --------------------------------------------------------------------------- AMP and callbacks


class Probe(Callback):
    """Scales the lr like a batch-size rule, and records the classifier's output dtype and the steps seen."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self.steps = 0
        self.epochs_ended = 0

    def configure(self, cfg, *, world_size):
        return cfg.replace(lr=cfg.lr * cfg.batch_size * world_size / 256)

    def on_start(self, ctx) -> None:
        ctx.model.classifier.register_forward_hook(lambda m, i, o: self.dtypes.add(o.dtype))

    def on_step_end(self, ctx, loss) -> None:
        self.steps += 1

    def on_epoch_end(self, ctx, row) -> None:
        self.epochs_ended += 1
        row["probe_steps"] = self.steps


def test_bf16_autocast_trains_on_cpu_like_fp32_and_callbacks_plug_in(tmp_path):
    cfg = RetrainConfig(epochs=1, batch_size=32, lr=0.8, grad_clip=5.0, log_interval=0, tensorboard=False)
    probe, ref_probe = Probe(), Probe()
    m = retrain(tiny(), cfg.replace(amp="bf16"), out_dir=tmp_path / "bf16", out=quiet, callbacks=[probe])
    ref = retrain(tiny(), cfg, out_dir=tmp_path / "fp32", out=quiet, callbacks=[ref_probe])
    assert torch.bfloat16 in probe.dtypes and ref_probe.dtypes == {torch.float32}  # the forward really ran in bf16
    assert probe.steps == 1437 // 32 and probe.epochs_ended == 1 and m["history"][0]["probe_steps"] == 44
    assert m["config"]["lr"] == pytest.approx(0.1) and m["config"]["amp"] == "bf16"  # configure() rescaled the lr
    # same training to within bf16 precision (measured: losses 2.297 both, test accuracy 0.265 vs 0.262)
    assert m["history"][0]["train_loss"] == pytest.approx(ref["history"][0]["train_loss"], rel=0.01)
    assert abs(m["test_acc"] - ref["test_acc"]) < 0.03 and ref["test_acc"] > 0.2


class Poison(Callback):
    """Makes every logit NaN before training and counts the steps taken."""

    def __init__(self) -> None:
        self.steps = 0

    def on_start(self, ctx) -> None:
        ctx.model.classifier.bias.data.fill_(float("nan"))

    def on_step_end(self, ctx, loss) -> None:
        self.steps += 1


def test_non_finite_loss_stops_retraining_at_the_end_of_its_epoch(tmp_path):
    poison = Poison()
    cfg = RetrainConfig(epochs=2, batch_size=128, log_interval=0, tensorboard=False)
    with pytest.raises(NonFiniteLossError, match="epoch of 11 iterations"):
        retrain(tiny(), cfg, out_dir=tmp_path, out=quiet, callbacks=[poison])
    assert poison.steps == 1437 // 128  # the whole first epoch ran: one check per epoch, on the ranks' sums
    assert not (tmp_path / "checkpoint.pt").exists()


# --------------------------------------------------------------------------- CLI, logs, timm


def test_cli_writes_logs_and_the_weights_load_through_timm(tmp_path, capsys):
    from search.cli import main

    arch_path = tmp_path / "arch.yaml"
    arch_path.write_text(tiny().to_yaml())
    out = tmp_path / "run"
    args = ["retrain", str(arch_path), "--epochs", "2", "-b", "128", "--opt", "adamw", "--lr", "0.005", "--sched",
            "step", "--decay-epochs", "1", "--sched-on-epochs", "--smoothing", "0.1", "--model-ema",
            "--log-interval", "4", "--threads", "1", "--out", str(out)]
    assert main(args) == 0  # in-process (the 2-process run of test_ddp.py goes through a real subprocess)
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("  epoch 1/2 [") for line in lines) == 2  # steps 4 and 8 of 11, no spam
    assert any(line.startswith("epoch 2/2") and "ema_test_acc" in line for line in lines)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["opt"] == "adamw" and metrics["epochs"] == 2
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_acc,test_loss,test_acc,lr") and len(rows) == 3
    assert [r["lr"] for r in metrics["history"]] == pytest.approx([5e-4, 5e-5])  # ×0.1 after each epoch

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    acc = events.Scalars("test/acc")
    assert [e.step for e in acc] == [1, 2] and acc[-1].value == pytest.approx(metrics["test_acc"], abs=1e-6)
    assert "ema/test_acc" in events.Tags()["scalars"]

    # the retrained weights load through timm with the exported arch and give the same test accuracy
    model = timm.create_model("nas_arch", arch=str(out / "arch.yaml"), num_classes=10, in_chans=1,
                              checkpoint_path=str(out / "model.pt")).eval()
    assert model.pretrained_cfg["input_size"] == (1, 16, 16)
    data = load_dataset("digits")
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in TensorLoader(data.test, batch_size=512,
                                                                                      shuffle=False))
    assert correct / len(data.test) == pytest.approx(metrics["test_acc"])


def test_timm_create_model_takes_a_preset_a_yaml_or_an_arch(tmp_path):
    arch = get_preset("wrn-10-1")
    path = tmp_path / "a.yaml"
    path.write_text(arch.to_yaml())
    for spec in ("wrn-10-1", str(path), arch):
        torch.manual_seed(0)
        model = timm.create_model("nas_arch", arch=spec, num_classes=7)
        assert model.pretrained_cfg["input_size"] == (3, 32, 32) and model.pretrained_cfg["classifier"] == "classifier"
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert "nas_arch" in timm.list_models("nas_*")
    ref = timm.create_model("nas_arch", arch=arch, num_classes=7)
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    # pretrained via timm's file overlay; a 7-class file adapted to 3 classes keeps the trunk
    adapted = timm.create_model("nas_arch", arch=arch, num_classes=3, pretrained=True,
                                pretrained_cfg_overlay={"file": str(tmp_path / "w.pt"), "num_classes": 7})
    assert torch.equal(adapted.stem[0].weight, ref.stem[0].weight) and adapted.classifier.out_features == 3
    assert timm.create_model("nas_arch", arch=arch, input_size=64).pretrained_cfg["input_size"] == (3, 64, 64)
    with pytest.raises(ValueError, match="arch"):
        timm.create_model("nas_arch", num_classes=3)
    with pytest.raises(ValueError, match="drop_path_rate"):
        timm.create_model("nas_arch", arch=arch, drop_path_rate=0.1)


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    from search.cli import main

    for args, field in [(["--batch-size", "3", "--mixup", "0.2"], "batch_size"), (["--opt", "sgdd"], "opt"),
                        (["--warmup-epochs", "5", "--epochs", "2"], "warmup_epochs"), (["--sync-bn"], "sync_bn")]:
        assert main(["retrain", "wrn-10-1", "--out", str(tmp_path / "x"), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"nas: error: {field}:") and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()
