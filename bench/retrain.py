"""Training throughput: the ``nas retrain`` loop against a plain timm training loop, side by side.

Rows (same batch, precision, memory format and ``torch.compile`` setting for every row):

- ``wrn-D-K`` (ours, CIFAR 32×32, 10 classes): our retrain loop vs a plain loop on the same model;
- ``ghostnet-1.0`` (ours) vs timm's ``ghostnet_100`` (the same network layer for layer, 1000
  classes) at ``--ghost-size``: our loop on ours; the plain loop on timm's and on ours (so the
  ratio splits into loop overhead and model implementation).

*Our loop* is :func:`train.retrain.train_epoch` fed by :class:`train.retrain.ShardedTensorLoader`
over a synthetic uint8 split (random crop + flip, normalisation: the real data path). The *plain
loop* is what one writes with timm — ``create_optimizer_v2`` (SGD), ``create_scheduler_v2``
(cosine, per step), autocast, cross-entropy, backward, step — over batches pre-made on the
device (no data work at all: its best case). Each timed epoch is ``--steps`` steps after
``--warmup`` untimed steps; variants alternate ``--repeats`` times and the median is reported.
``--clock cpu`` divides by this process's CPU seconds instead of wall seconds: on a shared
CPU-only machine it is far steadier (other processes' load does not count); on a GPU use wall.

    python bench/retrain.py                                   # CPU, small sizes
    python bench/retrain.py --device cuda --amp bf16 --wrn wrn-28-10 --batch-size 128 --ghost-size 224
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from space import get_preset
from train import TensorSplit
from train.retrain import (
    DistInfo,
    RetrainConfig,
    RetrainContext,
    ShardedTensorLoader,
    create_optimizer,
    create_precision,
    create_scheduler,
    param_groups,
    train_epoch,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prepare(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def ours(model: nn.Module, *, size: int, classes: int, args: argparse.Namespace) -> Callable[[int], float]:
    """A function running one epoch of ``n`` steps of the nas retrain loop; returns images/s."""
    device, cl = torch.device(args.device), args.channels_last
    cfg = RetrainConfig(batch_size=args.batch_size, amp=args.amp, log_interval=0, epochs=10_000, tensorboard=False)
    model = _prepare(model, device, cl)
    opt = create_optimizer(param_groups(model, weight_decay=cfg.weight_decay), cfg)
    train_model = torch.compile(model) if args.compile else model
    info = DistInfo(0, 1, 0, device)
    n_img = args.batch_size * max(args.steps, args.warmup)
    gen = torch.Generator().manual_seed(0)
    split = TensorSplit(torch.randint(0, 256, (n_img, 3, size, size), dtype=torch.uint8, generator=gen),
                        torch.randint(0, classes, (n_img,), generator=gen), mean=(0.5,) * 3, std=(0.25,) * 3)
    ctx = RetrainContext(cfg=cfg, arch=None, data=None, info=info, model=model, train_model=train_model, optimizer=opt,
                         scheduler=create_scheduler(opt, cfg, updates_per_epoch=args.steps), train_loader=None,
                         precision=create_precision(args.amp, device), out_dir=Path("."), out=lambda s: None)
    loss_fn = nn.CrossEntropyLoss()

    def epoch(n: int) -> float:
        split_n = TensorSplit(split.images[:n * args.batch_size], split.labels[:n * args.batch_size],
                              mean=(0.5,) * 3, std=(0.25,) * 3)
        ctx.train_loader = ShardedTensorLoader(split_n, batch_size=args.batch_size, pad=size // 8, flip=True,
                                               device=device, seed=ctx.epoch)
        _sync(device)
        t0 = args.clock()
        train_epoch(ctx, loss_fn=loss_fn, channels_last=cl)
        _sync(device)
        ctx.epoch += 1
        return n * args.batch_size / (args.clock() - t0)

    return epoch


def plain(model: nn.Module, *, size: int, classes: int, args: argparse.Namespace) -> Callable[[int], float]:
    """A function running ``n`` steps of a plain timm-style loop on pre-made device batches; returns images/s."""
    device, cl = torch.device(args.device), args.channels_last
    model = _prepare(model, device, cl).train()
    opt = create_optimizer_v2(model, "sgd", lr=0.1, weight_decay=5e-4, momentum=0.9)
    sched, _ = create_scheduler_v2(opt, "cosine", num_epochs=10_000, step_on_epochs=False, updates_per_epoch=args.steps)
    step_model = torch.compile(model) if args.compile else model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None
    gen = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if cl else torch.contiguous_format
    batches = [(torch.randn(args.batch_size, 3, size, size, generator=gen).to(device, memory_format=fmt),
                torch.randint(0, classes, (args.batch_size,), generator=gen).to(device)) for _ in range(4)]
    updates = 0

    def epoch(n: int) -> float:
        nonlocal updates
        _sync(device)
        t0 = args.clock()
        for i in range(n):
            x, y = batches[i % len(batches)]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(step_model(x), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            updates += 1
            sched.step_update(updates)
        _sync(device)
        return n * args.batch_size / (args.clock() - t0)

    return epoch


def measure(runners: dict[str, Callable[[int], float]], args: argparse.Namespace) -> dict[str, list[float]]:
    """Warm every runner up, then time them in alternation ``args.repeats`` times."""
    for run in runners.values():
        run(args.warmup)
    rates: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.repeats):
        for key, run in runners.items():
            rates[key].append(run(args.steps))
    return rates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--wrn", default="wrn-16-4")
    p.add_argument("--ghost-size", type=int, default=64, help="GhostNet input size (224 = ImageNet)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: this process's CPU seconds (steadier on a shared CPU-only machine; not for CUDA)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    if args.clock == "cpu" and not args.device.startswith("cpu"):
        p.error("--clock cpu measures CPU time; use --clock wall on an accelerator")
    clock_name, args.clock = args.clock, time.process_time if args.clock == "cpu" else time.perf_counter
    if args.channels_last is None:
        args.channels_last = args.device.startswith("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    wrn = get_preset(args.wrn)
    ghost = get_preset("ghostnet-1.0").replace(input_size=args.ghost_size)
    build = lambda a, k: timm.create_model("nas_arch", arch=a, num_classes=k)  # noqa: E731
    runners = {
        (args.wrn, "ours", "nas loop"): ours(build(wrn, 10), size=32, classes=10, args=args),
        (args.wrn, "ours", "plain loop"): plain(build(wrn, 10), size=32, classes=10, args=args),
        ("ghostnet-1.0", "ours", "nas loop"): ours(build(ghost, 1000), size=args.ghost_size, classes=1000, args=args),
        ("ghostnet-1.0", "ours", "plain loop"): plain(build(ghost, 1000), size=args.ghost_size, classes=1000,
                                                      args=args),
        ("ghostnet_100", "timm", "plain loop"): plain(timm.create_model("ghostnet_100", num_classes=1000),
                                                      size=args.ghost_size, classes=1000, args=args),
    }
    rates = measure(runners, args)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"clock {clock_name}  device {args.device}  amp {args.amp}  channels_last {args.channels_last}  "
          f"compile {args.compile}  batch {args.batch_size}  {args.steps} steps × {args.repeats} repeats (median)")
    print(f"torch {torch.__version__}  timm {timm.__version__}  threads {torch.get_num_threads()}")
    print(f"{'model':<14}{'impl':<6}{'input':>6}  {'loop':<11}{'img/s':>10}")
    for (model, impl, loop), v in med.items():
        size = 32 if model == args.wrn else args.ghost_size
        print(f"{model:<14}{impl:<6}{size:>6}  {loop:<11}{v:>10.1f}")
    ratios = {
        f"{args.wrn}: nas loop / plain loop (same model)": med[(args.wrn, "ours", "nas loop")]
        / med[(args.wrn, "ours", "plain loop")],
        "ghostnet: nas loop on ours / plain loop on timm's": med[("ghostnet-1.0", "ours", "nas loop")]
        / med[("ghostnet_100", "timm", "plain loop")],
        "ghostnet: ours / timm's, both in the plain loop": med[("ghostnet-1.0", "ours", "plain loop")]
        / med[("ghostnet_100", "timm", "plain loop")],
    }
    for name, r in ratios.items():
        print(f"ratio  {name:<52}{r:6.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k not in ("json", "clock")},
                                         "clock": clock_name,
                                         "images_per_s": {" | ".join(k): v for k, v in rates.items()},
                                         "ratios": ratios}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
