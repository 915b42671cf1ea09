"""Proxy accuracy: train the architecture for a few epochs and score it on a held-out validation split.

The recipe is the standard CIFAR one (He et al. 2016; Zagoruyko & Komodakis 2016), shortened:
SGD with Nesterov momentum 0.9, weight decay 5e-4 on weights only, cosine learning-rate decay per
iteration over the whole budget (optional linear warm-up), the data set's standard augmentation,
and a stratified validation split carved from the *training* data with the evaluator's seed. The
test split is never read. On the CPU the result is a pure function of ``(arch, budget, seed)``.
Training runs through :class:`train.Engine`, the loop retraining and compression use too.
"""
from __future__ import annotations

from typing import Any

import torch

from space import Arch, build_model
from train.checks import check_positive_int, resolve_device
from train.data import DataBundle, make_loaders
from train.engine import AMP_MODES, Engine, create_precision, evaluate_accuracy, make_cosine_scheduler, make_sgd
from train.methods import MethodRunner, MethodsConfig

from .base import Report, RunContext, register_evaluator
from .metrics import Metric


class AccuracyEvaluator:
    """Trains for ``budget`` epochs (default ``epochs``); returns validation accuracy and losses.

    After every epoch ``e`` (1-based, = epochs completed) it calls ``report({"epoch", "val_acc",
    "val_loss", "train_loss", "train_acc", "lr"})``; ``report`` may raise to stop the trial (the
    exception propagates). Accuracies are fractions in [0, 1]. A diverged run raises
    :class:`~train.engine.NonFiniteLossError` at its first non-finite step. The cosine schedule spans
    the whole budget, so a trial stopped early was trained with a schedule planned for its full budget.
    ``amp`` (``none``, ``bf16``, ``fp16``) and ``channels_last`` (default: on CUDA) as in retraining.

    ``methods`` (:class:`~train.methods.MethodsConfig`): GradInit before the first epoch (its
    ``gradinit_*`` statistics join epoch 1's report), ELR logging (``elr``, ``si_norm`` every epoch) or
    fixed-ELR training. ``lr`` is used as given: apply the batch-size rule
    (:meth:`~train.methods.MethodRunner.scaled_lr`) before passing it. The last epoch's method
    metrics also join the returned dict.
    """

    name = "accuracy"
    cheap = False

    def __init__(self, *, data: DataBundle, epochs: int = 3, batch_size: int = 128, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 5e-4, val_fraction: float = 0.2, seed: int = 0,
                 device: str = "cpu", threads: int | None = None, warmup_epochs: int = 0,
                 grad_clip: float | None = None, methods: MethodsConfig | None = None, amp: str = "none",
                 channels_last: bool | None = None) -> None:
        if not isinstance(data, DataBundle):
            raise ValueError(f"data: expected a DataBundle from load_dataset(), got {type(data).__name__}")
        self.data = data
        self.epochs = check_positive_int(epochs, "accuracy.epochs")
        self.batch_size = check_positive_int(batch_size, "accuracy.batch_size")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
            raise ValueError(f"accuracy.val_fraction: must be in (0, 1), got {val_fraction!r}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.val_fraction, self.seed = float(val_fraction), int(seed)
        resolve_device(device, field="accuracy.device")
        self.device = device
        self.threads = threads if threads is None else check_positive_int(threads, "accuracy.threads")
        self.warmup_epochs = check_positive_int(warmup_epochs, "accuracy.warmup_epochs", minimum=0)
        self.grad_clip = grad_clip
        if amp not in AMP_MODES:
            raise ValueError(f"accuracy.amp: must be one of {', '.join(AMP_MODES)}, got {amp!r}")
        if channels_last not in (None, True, False):
            raise ValueError(f"accuracy.channels_last: must be true, false or null (on CUDA), got {channels_last!r}")
        self.amp, self.channels_last = amp, channels_last
        self.methods = (methods if methods is not None else MethodsConfig()).check()

    def _check_arch(self, arch: Arch) -> None:
        if arch.input_size != self.data.input_size:
            raise ValueError(f"arch.input_size: {arch.input_size} does not match the data set "
                             f"{self.data.name!r}, whose images are {self.data.input_size}×{self.data.input_size}; "
                             f"set input_size: {self.data.input_size} in the arch (or data.image_size)")

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Report | None = None) -> dict[str, float]:
        epochs = self.epochs if budget is None else check_positive_int(budget, "budget")
        self._check_arch(arch)
        dev = resolve_device(self.device, field="accuracy.device")
        prev_threads = torch.get_num_threads()
        cuda = [dev.index] if dev.type == "cuda" else []
        try:
            if self.threads is not None:
                torch.set_num_threads(self.threads)
            with torch.random.fork_rng(devices=cuda):  # seeded here; the caller's RNG is left alone
                torch.manual_seed(self.seed)
                return self._train(arch, epochs, dev, report)
        finally:
            torch.set_num_threads(prev_threads)

    def _train(self, arch: Arch, epochs: int, dev: torch.device, report: Report | None) -> dict[str, float]:
        model = build_model(arch, num_classes=self.data.num_classes, in_chans=self.data.in_chans).to(dev)
        channels_last = self.channels_last if self.channels_last is not None else dev.type == "cuda"
        if channels_last:
            model.to(memory_format=torch.channels_last)
        train_loader, val_loader = make_loaders(self.data, batch_size=self.batch_size, val_fraction=self.val_fraction,
                                                seed=self.seed, augment=True)
        runner = MethodRunner(self.methods, momentum=self.momentum, elr_per_layer=False)
        size = arch.input_size
        extra = runner.start(model, train_loader, lr=self.lr, device=dev,
                             example_input=torch.zeros(2, self.data.in_chans, size, size, device=dev))
        optimizer = make_sgd(model, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                             param_groups_fn=runner.param_groups_fn())
        steps = epochs * len(train_loader)
        warmup = min(self.warmup_epochs * len(train_loader), steps - 1)
        precision = create_precision(self.amp, dev)
        engine = Engine(model=model, optimizer=optimizer, device=dev, precision=precision, channels_last=channels_last,
                        scheduler=make_cosine_scheduler(optimizer, total_steps=steps, warmup_steps=warmup),
                        grad_clip=self.grad_clip, on_step_end=lambda loss: runner.on_step_end(model, optimizer))
        seconds, result = 0.0, {}
        for epoch in range(1, epochs + 1):
            tr = engine.train_epoch(train_loader)
            va = evaluate_accuracy(model, val_loader, device=dev, precision=precision, channels_last=channels_last)
            seconds += tr["seconds"]
            group = optimizer.param_groups[0]
            result = {"epoch": epoch, "val_acc": va["acc"], "val_loss": va["loss"], "train_loss": tr["loss"],
                      "train_acc": tr["acc"], "lr": group["lr"] / group["lr_scale"]}
            method_row = {**(extra if epoch == 1 else {}), **runner.on_epoch_end(epoch, model, optimizer)}
            result.update(method_row)
            if report is not None:
                report(dict(result))
        return {"val_acc": result["val_acc"], "val_loss": result["val_loss"], "train_loss": result["train_loss"],
                "epochs": float(epochs), "train_seconds": seconds, **extra, **method_row}


def _example() -> dict[str, Any]:
    from train.data import load_dataset

    return {"data": load_dataset("digits"), "epochs": 1, "batch_size": 64}


def _for_run(ctx: RunContext) -> AccuracyEvaluator:
    """The search's proxy training from its ``proxy:`` settings; ``lr`` scaled once by the batch-size rule, and
    when the rule raises it, a linear warm-up over ``methods.lr_warmup_epochs`` (capped by the run's length)."""
    p = ctx.settings
    lr = MethodRunner(p.methods).scaled_lr(p.lr, p.batch_size)
    return AccuracyEvaluator(data=ctx.data, epochs=p.epochs, batch_size=p.batch_size, lr=lr, momentum=p.momentum,
                             warmup_epochs=p.methods.lr_warmup_epochs if lr > p.lr else 0,
                             weight_decay=p.weight_decay, val_fraction=ctx.val_fraction, seed=ctx.seed,
                             device=p.device, threads=ctx.threads, methods=p.methods, amp=p.amp,
                             channels_last=p.channels_last)


register_evaluator("accuracy", AccuracyEvaluator, metrics=[
    Metric("val_acc", "max", label="validation accuracy"),
    Metric("val_loss", "min", label="validation loss"),
    Metric("train_loss", "min", label="training loss"),
    Metric("epochs", None, label="epochs trained", fmt="{:g}"),
    Metric("train_seconds", None, label="training time (s)", unit="s", fmt="{:.1f}"),
], build=_for_run, settings="proxy", example=_example)
