"""Train an exported architecture from scratch on the full training split; report test accuracy.

A checkpoint (model, optimizer, LR scheduler, epoch, RNG state, history) is written after every
epoch; ``resume=True`` continues from it. The loader reshuffles from ``(seed, epoch)``, so a resumed
run sees the same batches as an uninterrupted one. Checkpoints hold only tensors and plain Python
data and load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from space import Arch, build_model

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class RetrainConfig:
    data: str = "digits"
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 0
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None


def retrain(arch: Arch, cfg: RetrainConfig, *, out_dir: Path, resume: bool = False,
            out: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``arch`` for ``cfg.epochs`` epochs; write checkpoint.pt, model.pt, metrics.json."""
    from evaluators import (count_complexity, evaluate_accuracy, load_dataset, make_cosine_scheduler, make_loaders,
                            make_sgd, make_test_loader, resolve_device, train_one_epoch)

    device = resolve_device(cfg.device, field="--device")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT
    if resume and not ckpt_path.is_file():
        raise ValueError(f"--resume: no checkpoint at {ckpt_path}")
    data = load_dataset(cfg.data, data_dir=cfg.data_dir, seed=cfg.seed)
    if arch.input_size != data.input_size:
        arch = arch.replace(input_size=data.input_size)
    torch.manual_seed(cfg.seed)
    model = build_model(arch, num_classes=data.num_classes, in_chans=data.in_chans).to(device)
    # The whole training split, augmented: no validation hold-out when retraining.
    train_loader, _ = make_loaders(data, batch_size=cfg.batch_size, val_fraction=0.0, seed=cfg.seed, augment=True)
    test_loader = make_test_loader(data, batch_size=256)
    optimizer = make_sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = make_cosine_scheduler(optimizer, total_steps=cfg.epochs * len(train_loader),
                                      warmup_steps=cfg.warmup_epochs * len(train_loader))
    history: list[dict[str, Any]] = []
    start = 0
    if resume:
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        if state["arch_id"] != arch.arch_id:
            raise ValueError(f"--resume: checkpoint is for arch {state['arch_id']}, not {arch.arch_id}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        history, start = state["history"], state["epoch"]
        out(f"resumed from epoch {start}")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for epoch in range(start, cfg.epochs):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        tr = train_one_epoch(model, train_loader, optimizer, device=device, scheduler=scheduler)
        te = evaluate_accuracy(model, test_loader, device=device)
        row = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_acc": te["acc"],
               "test_loss": te["loss"], "lr": optimizer.param_groups[0]["lr"], "seconds": tr["seconds"]}
        history.append(row)
        out(f"epoch {epoch + 1}/{cfg.epochs}  train_loss {tr['loss']:.4f}  test_acc {te['acc']:.4f}")
        state = {"arch_id": arch.arch_id, "epoch": epoch + 1, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": torch.get_rng_state(), "history": history}
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(ckpt_path)
    torch.save(model.state_dict(), out_dir / "model.pt")
    (out_dir / "arch.yaml").write_text(arch.to_yaml())
    cost = count_complexity(model.cpu(), input_size=arch.input_size, in_chans=data.in_chans)
    last = history[-1]
    metrics = {"arch_id": arch.arch_id, "epochs": cfg.epochs, "test_acc": last["test_acc"],
               "test_loss": last["test_loss"], "params": cost["params"], "macs": cost["macs"],
               "flops": cost["flops"], "seconds": time.perf_counter() - t0, "config": asdict(cfg),
               "history": history}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
