"""Taylor pruning of every block family to a MACs target, after training on the CIFAR-10 subset, side by side.

    .venv/bin/python bench/compress_families.py [--data cifar10] [--epochs 3] [--finetune-epochs 1]
                                                [--target 0.6] [--families ghost,sk,...] [--json F]

For each family a small CIFAR network of that block (``FAMILIES``; stem 16, three stages) is trained with
``nas retrain``'s engine for ``epochs`` epochs, pruned with ``nas prune``'s Taylor method (Molchanov et al.
2019; basic blocks through their hand-written channel groups, every other family through torch-pruning's
dependency graph, :mod:`train.compress.graph`) to ``target`` of its MACs, and fine-tuned for
``finetune_epochs`` epochs. Prints per family: MACs before, kept fraction (fvcore count of the exported
network, built from its YAML), test accuracy trained / right after pruning / after fine-tuning, and the
channel groups pruned vs kept whole.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FAMILIES: dict[str, dict] = {
    "basic": {"block": "basic", "order": "pre", "widths": (16, 32, 64)},
    "bottleneck": {"block": "bottleneck", "block_args": {"bottle_ratio": 0.5}},
    "resnext": {"block": "bottleneck", "block_args": {"bottle_ratio": 1.0, "group_width": 8}},
    "ghost": {"block": "ghost"},
    "sk": {"block": "sk", "block_args": {"groups": 4, "min_dim": 8}},
    "g_ghost": {"block": "g_ghost", "depth": 3},
    "mgic": {"block": "mgic", "block_args": {"group_size": 8, "coarsest_width": 8}},
    "gconv": {"block": "gconv", "widths": (16, 32, 64)},
    "resattn": {"block": "resattn", "order": "pre", "depth": 1},
}


def family_arch(name: str):
    """Stem 16, three stages (stride 1, 2, 2) of the family's block; widths 32/64/128 (16/32/64 for the dense 3×3
    families), depth 2."""
    from space import Arch, Stage, Stem

    spec = dict(FAMILIES[name])
    widths, depth = spec.pop("widths", (32, 64, 128)), spec.pop("depth", 2)
    stages = tuple(Stage(depth=depth, width=w, stride=1 if i == 0 else 2, **spec) for i, w in enumerate(widths))
    return Arch(stem=Stem(width=16), stages=stages, input_size=32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="cifar10", help="data set (default cifar10: the NAS_DATA_DIR subset)")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of " + ",".join(FAMILIES))
    ap.add_argument("--epochs", type=int, default=3, help="training epochs before pruning (default 3)")
    ap.add_argument("--finetune-epochs", type=int, default=1, help="fine-tuning epochs after pruning (default 1)")
    ap.add_argument("--steps", type=int, default=3, help="pruning steps (default 3)")
    ap.add_argument("--interval", type=int, default=20, help="mini-batches before each step (default 20)")
    ap.add_argument("--target", type=float, default=0.6, help="fraction of the MACs to keep (default 0.6)")
    ap.add_argument("--methods", default="taylor",
                    help="comma-separated: taylor (default), lrpet (projection + fine-tuning, factorised export); "
                         "each compresses the same trained network")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in ("taylor", "lrpet") for m in methods):
        ap.error(f"--methods: {args.methods!r}; valid: taylor, lrpet (comma-separated)")
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        ap.error(f"--families: unknown {', '.join(unknown) or '(none given)'}; valid: {', '.join(FAMILIES)}")

    import torch

    from train.compress import CompressConfig, compress
    from train.retrain import RetrainConfig, retrain

    quiet = lambda s: None  # noqa: E731
    rows = []
    for name in names:
        arch = family_arch(name)
        with tempfile.TemporaryDirectory(prefix=f"prune-{name}") as tmp:
            t0 = time.perf_counter()
            dense = retrain(arch, RetrainConfig(epochs=args.epochs, data=args.data, batch_size=args.batch_size,
                                                lr=args.lr, seed=args.seed, threads=args.threads, tensorboard=False),
                            out_dir=Path(tmp) / "dense", out=quiet)
            state = torch.load(Path(tmp) / "dense" / "model.pt", weights_only=True)
            trained_s = time.perf_counter() - t0
            for method in methods:
                t1 = time.perf_counter()
                cfg = CompressConfig(method=method, flops_target=args.target, finetune_epochs=args.finetune_epochs,
                                     steps=args.steps, interval=args.interval, data=args.data,
                                     batch_size=args.batch_size, lr=0.01, seed=args.seed, threads=args.threads)
                try:
                    m = compress(arch, state, cfg, out_dir=Path(tmp) / method, out=quiet)
                except ValueError as exc:
                    rows.append({"family": name, "method": method, "macs": dense["macs"],
                                 "trained_acc": dense["test_acc"], "error": str(exc)[:200]})
                    print(f"{name} {method}: {exc}", flush=True)
                    continue
                unprunable = m.get("unprunable", {})
                rows.append({"family": name, "method": method, "macs": m["before"]["macs"],
                             "kept_macs": m["ratio"]["macs"], "trained_acc": m["before"]["test_acc"],
                             "pruned_acc": m.get("pruned_test_acc", m.get("projected_test_acc")),
                             "finetuned_acc": m["after"]["test_acc"], "groups_kept_whole": len(unprunable),
                             "groups_pruned": (len(m["widths"]) - len(unprunable) if "widths" in m
                                               else sum(1 for r in m["ranks"].values() if r)),
                             "surgery_max_abs_diff": m.get("surgery_max_abs_diff", m.get("export_max_abs_diff")),
                             "train_seconds": trained_s, "seconds": time.perf_counter() - t1})
                r = rows[-1]
                print(f"{name} {method}: kept {r['kept_macs']:.3f} of {r['macs']:,} MACs, acc {r['trained_acc']:.4f} "
                      f"-> {r['pruned_acc']:.4f} -> {r['finetuned_acc']:.4f} ({trained_s:.0f} + {r['seconds']:.0f} s)",
                      flush=True)

    print(f"\ncompression per block family on {args.data}: {args.epochs} training epochs, target {args.target} "
          f"of the MACs, taylor {args.steps}x{args.interval} pruning batches, {args.finetune_epochs} fine-tuning "
          f"epoch(s), seed {args.seed}; pruned = right after pruning (taylor) / the first projection (lrpet); "
          f"groups = channel groups pruned/kept whole (taylor) or convs factorised (lrpet)")
    print(f"{'family':<12}{'method':<8}{'MACs':>13}{'kept':>7}{'trained':>9}{'pruned':>8}{'tuned':>8}{'groups':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['family']:<12}{r['method']:<8}{r['macs']:>13,}  not compressed: {r['error'][:80]}")
            continue
        groups = f"{r['groups_pruned']}" + (f"/{r['groups_kept_whole']}" if r["method"] == "taylor" else "")
        print(f"{r['family']:<12}{r['method']:<8}{r['macs']:>13,}{r['kept_macs']:>7.3f}{r['trained_acc']:>9.4f}"
              f"{r['pruned_acc']:>8.4f}{r['finetuned_acc']:>8.4f}{groups:>10}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
