"""Zero-cost proxies vs NAS-Bench-201's accuracy: Spearman ρ and Kendall τ over random cells, beside the published
numbers (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, Table 2, NB201 CIFAR-10).

    .venv/bin/python bench/zero_cost.py --space nb201 --n 1000 [--seed 0] [--batch-size 64] [--data-dir DIR]

Cells are drawn uniformly (seeded) from the 15,625; each network is built with the seed and scored by every proxy
of :mod:`evaluators.zero_cost` on one batch of CIFAR-10 training images (the search's batch: the first of the
seeded, un-augmented training loader). ``macs``/``params`` are the complexity counts (the paper's FLOPs/params
baselines). ``vote`` is the paper's majority vote of synflow, jacob_cov and snip, taken as rank aggregation: the
mean of the three ranks. Accuracy is the table's ``baseline_accuracy`` (this table's 200-epoch protocol, not the
original NAS-Bench-201's, so the anchors are a reference, not an expected value).
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PUBLISHED = {"synflow": 0.74, "jacob_cov": 0.73, "grad_norm": 0.58, "snip": 0.58, "grasp": 0.48, "fisher": 0.36,
             "macs": 0.75, "params": 0.75, "vote": 0.82}
"""Spearman ρ on NAS-Bench-201 CIFAR-10 (ICLR 2021, Table 2; FLOPs and params both 0.75); naswot has none there."""
PROXIES = ("synflow", "jacob_cov", "naswot", "grad_norm", "snip", "grasp", "fisher")
VOTE = ("synflow", "jacob_cov", "snip")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", choices=["nb201"], default="nb201")
    p.add_argument("--n", type=int, default=1000, help="random cells (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="scoring batch (the authors': 64)")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (default NAS_DATA_DIR)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("fvcore").setLevel(logging.ERROR)

    import numpy as np
    import torch
    from scipy import stats

    from evaluators.nb201_table import load_nb201_table
    from evaluators.zero_cost import score
    from evaluators.zero_cost_metrics import training_batch
    from search.bench_space import cell_counts
    from space import build_model, nb201
    from train.data import load_dataset

    torch.set_num_threads(1)
    table, counts = load_nb201_table(), cell_counts()
    cells = random.Random(args.seed).sample(sorted(table), args.n)
    data = load_dataset("cifar10", data_dir=args.data_dir)
    batch = training_batch(data, batch_size=args.batch_size, val_fraction=0.2, seed=args.seed)
    scores: dict[str, list[float]] = {k: [] for k in (*PROXIES, "macs", "params")}
    seconds = dict.fromkeys(PROXIES, 0.0)
    for ops in cells:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model = build_model(nb201(ops), num_classes=10, in_chans=3)
        for name in PROXIES:
            t0 = time.perf_counter()
            scores[name].append(score(name, model, batch, seed=args.seed))
            seconds[name] += time.perf_counter() - t0
        macs, params = counts(ops)
        scores["macs"].append(macs)
        scores["params"].append(params)
    acc = np.array([table[ops].baseline_accuracy for ops in cells])
    ranks = [stats.rankdata(np.nan_to_num(np.array(scores[k], dtype=float), nan=-np.inf)) for k in VOTE]
    scores["vote"] = list(np.mean(ranks, axis=0))
    print(f"{args.space}: {args.n} random cells (seed {args.seed}), batch {args.batch_size}, "
          "CIFAR-10 baseline_accuracy")
    print(f"{'proxy':<10} {'spearman':>9} {'kendall':>8} {'published ρ':>12} {'s/cell':>7}")
    for name, values in scores.items():
        v = np.nan_to_num(np.array(values, dtype=float), nan=-np.inf)
        rho, tau = stats.spearmanr(v, acc).statistic, stats.kendalltau(v, acc).statistic
        pub = f"{PUBLISHED[name]:.2f}" if name in PUBLISHED else "-"
        per = f"{seconds[name] / args.n:.2f}" if name in seconds else "-"
        print(f"{name:<10} {rho:>9.3f} {tau:>8.3f} {pub:>12} {per:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
