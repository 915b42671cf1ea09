"""LRPET from scratch vs LRPET from a trained model, at equal MACs and equal epochs, side by side in one run.

    .venv/bin/python bench/lrpet_paths.py [--data cifar10] [--arch wrn-16-1] [--epochs 6] [--finetune-epochs 2]
                                          [--target 0.6] [--seed 0] [--json F]

- **dense**: ``nas retrain ARCH`` for ``epochs`` epochs (the reference, full MACs).
- **from trained** (the ``nas prune --method lrpet`` path): the dense model of ``epochs − finetune_epochs`` epochs,
  projected onto the ranks of the MACs target, then ``finetune_epochs`` epochs of LRPET training (projection after
  each), exported factorised.
- **from scratch** (``nas retrain --lrpet-target``): ``epochs`` epochs of LRPET training from the random
  initialisation, exported factorised.

Both low-rank paths see the same number of training epochs and the same ranks rule, so the rows compare where the
training starts. Prints MACs (fraction of the dense), test accuracy and wall time per row. Guo et al.'s claim (the
abstract of "Compact Model Training by Low-Rank Projection with Energy Transfer"): a well pre-trained model is not a
good initialisation for the low-rank one — from scratch should match or beat from-trained at the same budget.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="cifar10", help="data set (default cifar10: the NAS_DATA_DIR subset)")
    ap.add_argument("--arch", default="wrn-16-1", help="a preset or YAML of basic blocks (default wrn-16-1)")
    ap.add_argument("--epochs", type=int, default=6, help="training epochs of every row (default 6)")
    ap.add_argument("--finetune-epochs", type=int, default=2, help="from-trained: LRPET epochs after the dense ones")
    ap.add_argument("--target", type=float, default=0.6, help="fraction of the MACs to keep (default 0.6)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if not 0 < args.finetune_epochs < args.epochs:
        ap.error("--finetune-epochs: must be in (0, --epochs)")

    import torch

    from space import load_arch
    from train.compress import CompressConfig, compress
    from train.retrain import RetrainConfig, retrain

    arch = load_arch(args.arch)
    common = dict(data=args.data, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                  tensorboard=False)
    quiet = lambda s: None  # noqa: E731
    rows = []
    with tempfile.TemporaryDirectory(prefix="lrpet") as tmp:
        t0 = time.perf_counter()
        dense = retrain(arch, RetrainConfig(epochs=args.epochs, **common), out_dir=Path(tmp) / "dense", out=quiet)
        rows.append({"path": "dense", "macs": dense["macs"], "test_acc": dense["test_acc"],
                     "seconds": time.perf_counter() - t0})

        t0 = time.perf_counter()
        pre = args.epochs - args.finetune_epochs
        short = retrain(arch, RetrainConfig(epochs=pre, **common), out_dir=Path(tmp) / "short", out=quiet)
        state = torch.load(Path(tmp) / "short" / "model.pt", weights_only=True)
        cfg = CompressConfig(method="lrpet", flops_target=args.target, finetune_epochs=args.finetune_epochs,
                             data=args.data, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             threads=args.threads)
        pruned = compress(arch, state, cfg, out_dir=Path(tmp) / "pruned", out=quiet)
        rows.append({"path": f"from trained ({pre}+{args.finetune_epochs} ep)", "macs": pruned["after"]["macs"],
                     "test_acc": pruned["after"]["test_acc"], "dense_test_acc": short["test_acc"],
                     "seconds": time.perf_counter() - t0})

        t0 = time.perf_counter()
        scratch = retrain(arch, RetrainConfig(epochs=args.epochs, lrpet_target=args.target, **common),
                          out_dir=Path(tmp) / "scratch", out=quiet)
        rows.append({"path": f"from scratch ({args.epochs} ep)", "macs": scratch["macs"],
                     "test_acc": scratch["test_acc"], "seconds": time.perf_counter() - t0})

    print(f"LRPET paths on {args.data}, {args.arch}, MACs target {args.target}, {args.epochs} epochs each, "
          f"seed {args.seed}")
    print(f"{'path':<28}{'MACs':>14}{'of dense':>10}{'test_acc':>10}{'wall s':>9}")
    for r in rows:
        print(f"{r['path']:<28}{r['macs']:>14,}{r['macs'] / rows[0]['macs']:>10.3f}{r['test_acc']:>10.4f}"
              f"{r['seconds']:>9.0f}")
    gap = rows[2]["test_acc"] - rows[1]["test_acc"]
    print(f"from scratch − from trained: {gap:+.4f} test accuracy at MACs {rows[2]['macs'] / rows[0]['macs']:.3f} "
          f"vs {rows[1]['macs'] / rows[0]['macs']:.3f} of the dense")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
