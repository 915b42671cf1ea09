"""Proxy epoch time: the training engine against a plain hand-written SGD loop, side by side.

*Engine*: :class:`train.Engine` as :class:`evaluators.AccuracyEvaluator` runs it (fp32, contiguous,
step-wise NaN check). *Plain*: the minimal loop in this file — zero_grad, forward, cross-entropy,
read the loss, backward, step, schedule. Both train the same network from the same initial weights
with :func:`train.make_sgd` and the per-iteration cosine schedule, each over its own
:class:`train.TensorLoader` with the same seed (the same batches, crops and flips), on the CPU with
``--threads`` intra-op threads. After ``--warmup`` untimed epochs each, the two alternate for
``--repeats`` timed epochs (which side goes first alternates too). The table shows the median
seconds per epoch and two ratios engine/plain (goal ≤ 1.05): of the medians, and the median of
the per-epoch pairs (steadier when the machine's load drifts: a pair shares it).
Both compute the same thing, so their weights must also stay bit-identical after every epoch
(``same weights``; the exit status is 1 otherwise).

Rows: ``wrn-16-1`` on the CIFAR-10 subset (32×32, batch 128, ``--cifar-images`` images per epoch;
``--data-dir`` or ``NAS_DATA_DIR``) and ``wrn-10-1`` on digits (16×16, batch 32, ``--digits-images``
images per epoch), a network inside the quickstart space (widths 16/32/64, depth 1, basic blocks).
``--clock cpu`` (default) counts this process's CPU seconds: on a shared machine other processes'
load does not count.

    python bench/proxy_epoch.py
    python bench/proxy_epoch.py --repeats 15 --cifar-images 1024 --json results/proxy_epoch.json
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from space import build_model, get_preset
from train import DataBundle, Engine, NonFiniteLossError, TensorLoader, load_dataset, make_cosine_scheduler, make_sgd


def plain_epoch(model: nn.Module, loader: TensorLoader, optimizer: torch.optim.Optimizer, scheduler: Any
                ) -> dict[str, float]:
    """One epoch of the plain loop (the proxy loop's shape before the engine)."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for it, (x, y) in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(f"non-finite training loss {value} at iteration {it}")
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += value * len(y)
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += len(y)
    return {"loss": loss_sum / seen, "acc": correct / seen}


class Row(NamedTuple):
    name: str
    preset: str
    data: DataBundle
    images: int
    batch_size: int


def _side(model: nn.Module, row: Row, *, epochs: int, seed: int) -> tuple[nn.Module, TensorLoader, Any, Any]:
    """A private copy of ``model`` with its optimizer, schedule over ``epochs`` and loader."""
    model = copy.deepcopy(model)
    loader = TensorLoader(row.data.train, torch.arange(row.images), batch_size=row.batch_size, shuffle=True,
                          seed=seed, pad=row.data.pad, flip=row.data.flip)
    opt = make_sgd(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    return model, loader, opt, make_cosine_scheduler(opt, total_steps=epochs * len(loader))


def bench_row(row: Row, *, warmup: int, repeats: int, clock: Callable[[], float], seed: int = 0) -> dict[str, Any]:
    """Alternate engine and plain epochs; median seconds per epoch, ratio and whether the weights stayed equal."""
    torch.manual_seed(seed)
    model = build_model(get_preset(row.preset).replace(input_size=row.data.input_size),
                        num_classes=row.data.num_classes, in_chans=row.data.in_chans)
    epochs = warmup + repeats
    e_model, e_loader, e_opt, e_sched = _side(model, row, epochs=epochs, seed=seed)
    p_model, p_loader, p_opt, p_sched = _side(model, row, epochs=epochs, seed=seed)
    engine = Engine(model=e_model, optimizer=e_opt, device="cpu", scheduler=e_sched)
    sides = {"engine": lambda: engine.train_epoch(e_loader),
             "plain": lambda: plain_epoch(p_model, p_loader, p_opt, p_sched)}
    times: dict[str, list[float]] = {"engine": [], "plain": []}
    same = True
    for epoch in range(epochs):
        losses = {}
        for side in (("engine", "plain") if epoch % 2 == 0 else ("plain", "engine")):  # neither always goes first
            t0 = clock()
            losses[side] = sides[side]()["loss"]
            if epoch >= warmup:
                times[side].append(clock() - t0)
        same = same and losses["engine"] == losses["plain"] and all(
            torch.equal(a, b) for a, b in zip(e_model.state_dict().values(), p_model.state_dict().values()))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"row": row.name, "images": len(e_loader.indices), "batch_size": row.batch_size,
            "steps": len(e_loader), "engine_s": med["engine"], "plain_s": med["plain"],
            "ratio": med["engine"] / med["plain"],
            "paired_ratio": statistics.median(e / p for e, p in zip(times["engine"], times["plain"])),
            "same_weights": same, "times": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar-images", type=int, default=512)
    p.add_argument("--digits-images", type=int, default=512)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: NAS_DATA_DIR)")
    p.add_argument("--skip-cifar", action="store_true", help="only the digits row")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    for name, low in (("cifar_images", 1), ("digits_images", 1), ("warmup", 0), ("repeats", 1), ("threads", 1)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')}: must be >= {low}")
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    digits = load_dataset("digits")
    rows = [Row("digits wrn-10-1", "wrn-10-1", digits, min(args.digits_images, len(digits.train)), 32)]
    if not args.skip_cifar:
        cifar = load_dataset("cifar10", data_dir=args.data_dir)
        rows.insert(0, Row("cifar wrn-16-1", "wrn-16-1", cifar, min(args.cifar_images, len(cifar.train)), 128))
    results = [bench_row(r, warmup=args.warmup, repeats=args.repeats, clock=clock) for r in rows]
    print(f"clock {args.clock}  threads {torch.get_num_threads()}  torch {torch.__version__}  "
          f"{args.warmup} warm-up + {args.repeats} timed epochs per side, alternating (median)")
    print(f"{'row':<17}{'images':>7}{'batch':>6}{'steps':>6}{'engine s':>10}{'plain s':>9}{'ratio':>7}"
          f"{'paired':>8}  same weights")
    for r in results:
        print(f"{r['row']:<17}{r['images']:>7}{r['batch_size']:>6}{r['steps']:>6}{r['engine_s']:>10.3f}"
              f"{r['plain_s']:>9.3f}{r['ratio']:>7.3f}{r['paired_ratio']:>8.3f}  "
              f"{'yes' if r['same_weights'] else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "json"},
                                         "rows": results}, indent=2, default=str))
    return 0 if all(r["same_weights"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
