"""``nas prune``: compress a retrained network to a cost target, fine-tune it, write the smaller one.

Two methods:

- ``taylor`` — iterative Taylor channel pruning (Molchanov et al. 2019, :mod:`.taylor`): ``steps``
  rounds of ``interval`` fine-tuning mini-batches that also accumulate the gate importances, each
  ending with a removal step whose cost target moves linearly from the full cost to the final one
  (global ranking, or the per-group widths of the gradient-redundancy budget, :mod:`.redundancy`);
  then the channels are removed physically (:mod:`.surgery`) and the smaller network is fine-tuned
  for ``finetune_epochs`` epochs (cosine LR).
- ``lrpet`` — LRPET (Guo et al. 2023, :mod:`.lrpet`): project onto the planned ranks, then
  ``finetune_epochs`` epochs of SGD each followed by a projection, then export factorised convs.
  Ranks come from ``rank_ratio``, or a uniform ratio solved for the cost target, or the redundancy budget.

Every training step (the pruning rounds, the fine-tuning) runs through :class:`train.Engine`; a
non-finite loss raises :class:`train.NonFiniteLossError` at its step.

The cost target is a fraction of the original network's MACs (``flops_target``; conv+linear
multiply-adds, the papers' convention) or parameters (``params_target``). Writes ``arch.yaml``,
``model.pt`` (a state dict that ``build_model(from_yaml(arch.yaml))`` loads strictly) and
``metrics.json`` (cost and test accuracy before and after, per-step history, the chosen widths or ranks).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from space import Arch, build_model

from .config import CompressConfig
from .lrpet import LrpetCallback, conv_structure, export_lowrank, plan_ranks, ranks_for_target, redundancy_ranks
from .redundancy import GradientRedundancy, LayerRedundancy, redundancy_widths
from .structure import analyse
from .taylor import TaylorPruner


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``model.pt`` (a state dict) or a retrain ``checkpoint.pt`` (its ``"model"`` entry)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CKPT: file {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a non-checkpoint file
        raise ValueError(f"CKPT: {str(path)!r} is not a torch checkpoint ({type(exc).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"CKPT: {str(path)!r} holds neither a state dict nor a checkpoint with a 'model' state dict")
    return obj


def _batches(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(10_000 + epoch)  # distinct from the fine-tuning epochs' shuffles
        yield from loader
        epoch += 1


def _redundancy(model: nn.Module, batches: Iterator, cfg: CompressConfig, device: torch.device
                ) -> dict[str, LayerRedundancy]:
    """Gradient Gram matrices over ``redundancy_batches`` mini-batches; weights and BN statistics are restored."""
    saved = copy.deepcopy(model.state_dict())
    tracker = GradientRedundancy(model)
    model.train()
    for _ in range(cfg.redundancy_batches):
        x, y = next(batches)
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.to(device)), y.to(device)).backward()
        tracker.accumulate()
    model.zero_grad(set_to_none=True)
    model.load_state_dict(saved)
    return tracker.redundancy(cfg.tau)


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    a.eval()
    b.eval()
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def _finetune(model: nn.Module, cfg: CompressConfig, train_loader: Any, test_loader: Any, device: torch.device,
              out: Callable[[str], None], *, after_epoch: Callable[[nn.Module], None] | None = None
              ) -> list[dict[str, float]]:
    from train import Engine, evaluate_accuracy, make_cosine_scheduler, make_sgd

    if cfg.finetune_epochs == 0:
        return []
    opt = make_sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    engine = Engine(model=model, optimizer=opt, device=device,
                    scheduler=make_cosine_scheduler(opt, total_steps=cfg.finetune_epochs * len(train_loader)))
    history = []
    for epoch in range(cfg.finetune_epochs):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        tr = engine.train_epoch(train_loader)
        if after_epoch is not None:
            after_epoch(model)
        te = evaluate_accuracy(model, test_loader, device=device)
        history.append({"epoch": epoch + 1, "train_loss": tr["loss"], "test_acc": te["acc"]})
        out(f"fine-tune epoch {epoch + 1}/{cfg.finetune_epochs}  train_loss {tr['loss']:.4f}  test_acc {te['acc']:.4f}")
    return history


def _taylor(model: nn.Module, cfg: CompressConfig, loaders: tuple[Any, Any], device: torch.device,
            out: Callable[[str], None]) -> tuple[Arch, nn.Module, dict[str, Any]]:
    from train import Engine, evaluate_accuracy, make_sgd

    train_loader, test_loader = loaders
    structure = analyse(model)
    full = structure.sizes()
    base = structure.cost()[cfg.metric]
    target = cfg.fraction * base
    batches = _batches(train_loader)
    info: dict[str, Any] = {}
    widths = None
    if cfg.budget == "redundancy":
        layers = _redundancy(model, batches, cfg, device)
        widths = redundancy_widths(structure, layers, target, metric=cfg.metric, max_ratio=cfg.max_ratio)
        info["layer_redundancy"] = {n: asdict(r) for n, r in layers.items()}
    pruner = TaylorPruner(model, structure, normalize=cfg.normalize)
    engine = Engine(model=model, optimizer=make_sgd(model, lr=cfg.lr, momentum=cfg.momentum,
                                                    weight_decay=cfg.weight_decay),
                    device=device, after_backward=pruner.accumulate)
    history = []
    for step in range(1, cfg.steps + 1):
        loss = engine.train_epoch(islice(batches, cfg.interval))["loss"]
        if widths is None:
            removed = pruner.prune_global(base - (base - target) * step / cfg.steps, metric=cfg.metric)
        else:
            removed = pruner.prune_to_widths({g: round(full[g] - (full[g] - w) * step / cfg.steps)
                                              for g, w in widths.items()})
        pruner.reset()
        cost = pruner.cost()
        history.append({"step": step, "train_loss": loss, "removed": removed, **cost})
        out(f"prune step {step}/{cfg.steps}  removed {removed} channels  macs {cost['macs']:,}  "
            f"params {cost['params']:,}  ({cost[cfg.metric] / base:.3f} of {cfg.metric})")
    if pruner.cost()[cfg.metric] > 1.05 * target:
        out(f"warning: {cfg.metric} stay at {pruner.cost()[cfg.metric] / base:.3f} of the original, above the target "
            f"{cfg.fraction}: every prunable group is at its minimum width")
    info["pruned_test_acc"] = evaluate_accuracy(model, test_loader, device=device)["acc"]
    probe = next(iter(test_loader))[0].to(device)
    model.eval()
    with torch.no_grad():
        masked = model(probe)
    arch, small = pruner.finalize()
    small.to(device).eval()
    with torch.no_grad():
        info["surgery_max_abs_diff"] = float((small(probe) - masked).abs().max())
    info["widths"] = {g: n for g, n in pruner.sizes().items()}
    info["unprunable"] = {g.name: g.reason for g in structure.groups.values() if not g.prunable}
    info["prune_history"] = history
    info["finetune_history"] = _finetune(small, cfg, train_loader, test_loader, device, out)
    return arch, small, info


def _taylor_graph(model: nn.Module, cfg: CompressConfig, loaders: tuple[Any, Any], device: torch.device,
                  out: Callable[[str], None]) -> tuple[Arch, nn.Module, dict[str, Any]]:
    """Taylor pruning of a network with other blocks than ``basic``: torch-pruning's groups (:mod:`.graph`)."""
    from train import Engine, evaluate_accuracy, make_sgd

    from .graph import GraphPruner

    if cfg.metric != "macs" or cfg.budget != "global" or cfg.normalize != "none":
        raise ValueError("method: Taylor pruning of blocks other than basic supports flops_target with the global "
                         "budget and normalize none")
    if model.arch.ranks:
        raise ValueError("arch: it has factorised convs (ranks, an LRPET export); prune channels before LRPET, "
                         "not after")
    train_loader, test_loader = loaders
    pruner = GraphPruner(model)
    skipped = {r: why for r, why in pruner.reasons.items() if why is not None}
    out(f"channel groups: {len(pruner.roots)} prunable, {len(skipped)} kept at full width")
    base = pruner.macs()
    target = cfg.fraction * base
    batches = _batches(train_loader)
    history = []
    for step in range(1, cfg.steps + 1):
        engine = Engine(model=model, optimizer=make_sgd(model, lr=cfg.lr, momentum=cfg.momentum,
                                                        weight_decay=cfg.weight_decay),
                        device=device, after_backward=pruner.accumulate)
        loss = engine.train_epoch(islice(batches, cfg.interval))["loss"]
        removed = pruner.prune_global(base - (base - target) * step / cfg.steps)
        pruner.reset()
        macs = pruner.macs()
        history.append({"step": step, "train_loss": loss, "removed_units": removed, "macs": macs})
        out(f"prune step {step}/{cfg.steps}  removed {removed} units  macs {macs:,}  ({macs / base:.3f} of macs)")
    if pruner.macs() > 1.05 * target:
        out(f"warning: macs stay at {pruner.macs() / base:.3f} of the original, above the target {cfg.fraction}: "
            f"every prunable group is at its minimum width")
    info: dict[str, Any] = {"pruned_test_acc": evaluate_accuracy(model, test_loader, device=device)["acc"]}
    arch, small = pruner.finalize()
    small.to(device)
    info["surgery_max_abs_diff"] = _max_diff(model, small, next(iter(test_loader))[0].to(device))
    info["widths"] = pruner.sizes()
    info["unprunable"] = skipped
    info["prune_history"] = history
    info["finetune_history"] = _finetune(small, cfg, train_loader, test_loader, device, out)
    return arch, small, info


def _lrpet(model: nn.Module, cfg: CompressConfig, loaders: tuple[Any, Any], device: torch.device,
           out: Callable[[str], None]) -> tuple[Arch, nn.Module, dict[str, Any]]:
    from train import evaluate_accuracy

    train_loader, test_loader = loaders
    structure = conv_structure(model)
    info: dict[str, Any] = {}
    if cfg.rank_ratio is not None:
        ranks = plan_ranks(structure, rank_ratio=cfg.rank_ratio)
    elif cfg.budget == "redundancy":
        layers = _redundancy(model, _batches(train_loader), cfg, device)
        info["layer_redundancy"] = {n: asdict(r) for n, r in layers.items()}
        ranks = redundancy_ranks(structure, layers, cfg.fraction * structure.cost()[cfg.metric], metric=cfg.metric,
                                 max_ratio=cfg.max_ratio)
    else:
        ranks = ranks_for_target(structure, cfg.fraction * structure.cost()[cfg.metric], metric=cfg.metric)
    callback = LrpetCallback(ranks)
    callback.on_epoch_end(model)
    info["projected_test_acc"] = evaluate_accuracy(model, test_loader, device=device)["acc"]
    out(f"projected onto ranks {sorted(set(ranks.values()))}: test_acc {info['projected_test_acc']:.4f}")
    info["finetune_history"] = _finetune(model, cfg, train_loader, test_loader, device, out,
                                         after_epoch=callback.on_epoch_end)
    arch, small = export_lowrank(model, ranks, structure=structure)
    small.to(device)
    info["export_max_abs_diff"] = _max_diff(model, small, next(iter(test_loader))[0].to(device))
    info["ranks"] = ranks
    return arch, small, info


def _measure(model: nn.Module, arch: Arch, in_chans: int, test_loader: Any, device: torch.device) -> dict[str, Any]:
    from space.complexity import count_complexity
    from train import evaluate_accuracy

    cost = count_complexity(model, input_size=arch.input_size, in_chans=in_chans)
    return {"arch_id": arch.arch_id, **cost, "test_acc": evaluate_accuracy(model, test_loader, device=device)["acc"]}


def _basic_only(arch: Arch) -> bool:
    """Whether :mod:`.structure`'s hand-written basic-block analysis applies (else the dependency graph's)."""
    from space import BLOCKS

    from .structure import SUPPORTED_BLOCKS

    return not arch.channels and all(BLOCKS.entry(s.block).name in SUPPORTED_BLOCKS for s in arch.stages)


def compress(arch: Arch, state: dict[str, torch.Tensor], cfg: CompressConfig, *, out_dir: Path,
             out: Callable[[str], None] = print) -> dict[str, Any]:
    """Compress the network ``arch`` with weights ``state``; write arch.yaml, model.pt, metrics.json to ``out_dir``."""
    from train import load_dataset, make_loaders, make_test_loader, resolve_device

    cfg.check()
    device = resolve_device(cfg.device, field="device")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_dataset(cfg.data, data_dir=cfg.data_dir, seed=cfg.seed)
    if arch.input_size != data.input_size:
        arch = arch.replace(input_size=data.input_size)
    torch.manual_seed(cfg.seed)
    model = build_model(arch, num_classes=data.num_classes, in_chans=data.in_chans)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"CKPT: the weights do not fit the architecture ({str(exc).splitlines()[0]})") from None
    model.to(device)
    train_loader, _ = make_loaders(data, batch_size=cfg.batch_size, val_fraction=0.0, seed=cfg.seed, augment=True)
    test_loader = make_test_loader(data, batch_size=256)
    t0 = time.perf_counter()
    before = _measure(model, arch, data.in_chans, test_loader, device)
    out(f"before: macs {before['macs']:,}  params {before['params']:,}  test_acc {before['test_acc']:.4f}")
    if cfg.method == "taylor":
        run = _taylor if _basic_only(arch) else _taylor_graph
    else:
        run = _lrpet
    new_arch, small, info = run(model, cfg, (train_loader, test_loader), device, out)
    after = _measure(small, new_arch, data.in_chans, test_loader, device)
    out(f"after:  macs {after['macs']:,}  params {after['params']:,}  test_acc {after['test_acc']:.4f}  "
        f"({after['macs'] / before['macs']:.3f} of the MACs)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "arch.yaml").write_text(new_arch.to_yaml())
    torch.save({k: v.detach().cpu() for k, v in small.state_dict().items()}, out_dir / "model.pt")
    metrics = {"method": cfg.method, "target": {"metric": cfg.metric, "fraction": cfg.fraction,
                                                "rank_ratio": cfg.rank_ratio, "budget": cfg.budget},
               "before": before, "after": after,
               "ratio": {"macs": after["macs"] / before["macs"], "params": after["params"] / before["params"]},
               **info, "seconds": time.perf_counter() - t0, "config": cfg.to_dict()}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
