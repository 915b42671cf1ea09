"""Zero-cost proxies vs accuracy: Spearman ρ and Kendall τ over random architectures, beside the published numbers
(Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, Table 2, NB201 CIFAR-10).

    .venv/bin/python bench/zero_cost.py --space nb201 --n 1000 [--jobs 2] [--seed 0] [--batch-size 64] [--json F]
    .venv/bin/python bench/zero_cost.py --space full --n 40 [--jobs 2]      # our own space, proxy-trained accuracy

``nb201``: cells drawn uniformly (seeded) from the 15,625; accuracy is the table's ``baseline_accuracy`` (this
table's 200-epoch protocol, not the original NAS-Bench-201's, so the anchors are a reference, not an expected value).
``full``: architectures drawn by the random sampler from ``configs/full_space.yaml``'s space; accuracy is the
validation accuracy after the fixed proxy budget of :data:`FULL_BUDGET` on the CIFAR-10 subset (``--data-dir`` or
``NAS_DATA_DIR``), trained once per architecture and kept with its proxy scores in ``bench/data/zero_cost_full.json``
(re-runs read it and train only architectures not in it; ``--fresh`` ignores it).

Each network is built with the seed and scored by every proxy of :mod:`evaluators.zero_cost` on one batch of
CIFAR-10 training images (the search's batch: the first of the seeded, un-augmented training loader), all proxies
of a network from shared passes (:func:`evaluators.zero_cost.score_all`: the same numbers as one call per proxy).
``macs``/``params`` are the complexity counts (the paper's FLOPs/params baselines). ``vote`` is the paper's majority
vote of synflow, jacob_cov and snip taken as rank aggregation: the mean of the three ranks. ``--jobs`` scores (and
trains) in that many processes of one thread each.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PUBLISHED = {"synflow": 0.74, "jacob_cov": 0.73, "grad_norm": 0.58, "snip": 0.58, "grasp": 0.48, "fisher": 0.36,
             "macs": 0.75, "params": 0.75, "vote": 0.82}
"""Spearman ρ on NAS-Bench-201 CIFAR-10 (ICLR 2021, Table 2; FLOPs and params both 0.75); naswot has none there."""
PROXIES = ("synflow", "jacob_cov", "naswot", "grad_norm", "snip", "grasp", "fisher")
VOTE = ("synflow", "jacob_cov", "snip")
FULL_CONFIG = ROOT / "configs" / "full_space.yaml"
FULL_TABLE = ROOT / "bench" / "data" / "zero_cost_full.json"
FULL_BUDGET = {"epochs": 2, "batch_size": 128, "lr": 0.05, "image_size": 16}
"""The own-space proxy budget: 2 epochs at batch 128, lr 0.05 (full_space.yaml's), on the 8,000 training images of
the subset's 80/20 split, images resized to 16×16 so 40 architectures train in ≤ 45 min on 2 cores; validation
accuracy on the other 2,000."""


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("fvcore").setLevel(logging.ERROR)


def _score(model: Any, batch: Any, seed: int) -> tuple[dict[str, float], float]:
    import torch

    from evaluators.zero_cost import score_all

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    relus = any("ReLU" in type(m).__name__ for m in model.modules())
    names = [p for p in PROXIES if relus or p != "naswot"]  # naswot's codes are ReLU signs: undefined without
    scores: dict[str, float | None] = {"naswot": None, **score_all(names, model, batch, seed=seed)}
    return scores, time.perf_counter() - t0


def _score_cells(cells: list[tuple[str, ...]], batch: Any, seed: int) -> list[dict[str, Any]]:
    import torch

    from space import build_model, nb201

    _quiet()
    rows = []
    for ops in cells:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(nb201(ops), num_classes=10, in_chans=3)
        scores, seconds = _score(model, batch, seed)
        rows.append({"ops": list(ops), **scores, "seconds": seconds})
    return rows


def _train_archs(archs: list[str], data_dir: str | None, seed: int, partial: str) -> list[dict[str, Any]]:
    """Score and proxy-train each architecture (YAML text) under :data:`FULL_BUDGET`, one thread; each row is also
    appended to the JSON-lines file ``partial`` as soon as it is done, so an interrupted run keeps what it trained.
    A run that diverges (non-finite loss) is kept with ``val_acc`` None and its ``error``."""
    import torch

    from evaluators.accuracy import AccuracyEvaluator
    from evaluators.zero_cost_metrics import training_batch
    from space import Arch, build_model
    from space.complexity import count_complexity
    from train.data import load_dataset
    from train.engine import NonFiniteLossError

    _quiet()
    torch.set_num_threads(1)
    data = load_dataset("cifar10", data_dir=data_dir)
    small = load_dataset("cifar10", data_dir=data_dir, image_size=FULL_BUDGET["image_size"])
    batch = training_batch(data, batch_size=64, val_fraction=0.2, seed=seed)
    trainer = AccuracyEvaluator(data=small, epochs=FULL_BUDGET["epochs"], batch_size=FULL_BUDGET["batch_size"],
                                lr=FULL_BUDGET["lr"], val_fraction=0.2, seed=seed, threads=1)
    rows = []
    for text in archs:
        arch = Arch.from_yaml(text)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(arch, num_classes=10, in_chans=3)
        scores, seconds = _score(model, batch, seed)
        counts = count_complexity(model, input_size=32, in_chans=3)
        t0 = time.perf_counter()
        row = {"arch_yaml": text, "arch_id": arch.arch_id, **scores, "macs": float(counts["macs"]),
               "params": float(counts["params"]), "seconds": seconds}
        try:
            row["val_acc"] = float(trainer.evaluate(arch.replace(input_size=FULL_BUDGET["image_size"]))["val_acc"])
        except NonFiniteLossError as exc:
            row.update(val_acc=None, error=str(exc).splitlines()[0][:200])
        row["train_seconds"] = time.perf_counter() - t0
        rows.append(row)
        with open(partial, "a") as f:
            f.write(json.dumps(row) + "\n")
        acc = "diverged" if row["val_acc"] is None else f"val_acc {row['val_acc']:.4f}"
        print(f"  {arch.arch_id}: {acc}, macs {row['macs'] / 1e6:.1f} M, proxies {seconds:.1f} s, "
              f"training {row['train_seconds']:.0f} s", flush=True)
    return rows


def _in_jobs(fn: Any, items: list, jobs: int, *args: Any) -> list[dict[str, Any]]:
    """``fn(chunk, *args)`` over ``jobs`` interleaved chunks of ``items`` in spawned processes; rows in item order."""
    if jobs <= 1 or len(items) <= 1:
        return fn(items, *args)
    import multiprocessing as mp

    chunks = [items[k::jobs] for k in range(jobs)]
    with mp.get_context("spawn").Pool(len(chunks)) as pool:
        parts = pool.starmap(fn, [(c, *args) for c in chunks])
    rows: list[dict[str, Any]] = [None] * len(items)  # type: ignore[list-item]
    for k, part in enumerate(parts):
        for j, row in enumerate(part):
            rows[k + j * jobs] = row
    return rows


def sample_full_space(n: int, *, seed: int) -> list[str]:
    """``n`` distinct architectures (YAML) drawn by Optuna's random sampler from configs/full_space.yaml's space."""
    import optuna

    from search import SearchSpace, load_config, sample_archs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return [a.to_yaml() for a in sample_archs(SearchSpace(load_config(FULL_CONFIG).space, input_size=32), n,
                                              seed=seed)]


def _nb201(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    from evaluators.nb201_table import load_nb201_table
    from evaluators.zero_cost_metrics import training_batch
    from search.bench_space import cell_counts
    from train.data import load_dataset

    table, counts = load_nb201_table(), cell_counts()
    cells = random.Random(args.seed).sample(sorted(table), args.n)
    data = load_dataset("cifar10", data_dir=args.data_dir)
    batch = training_batch(data, batch_size=args.batch_size, val_fraction=0.2, seed=args.seed)
    rows = _in_jobs(_score_cells, cells, args.jobs, batch, args.seed)
    for row, ops in zip(rows, cells):
        row["macs"], row["params"] = map(float, counts(ops))
        row["acc"] = table[ops].baseline_accuracy / 100
    return rows, f"nb201: {args.n} random cells (seed {args.seed}), batch {args.batch_size}, CIFAR-10 baseline_accuracy"


def _full(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    archs = sample_full_space(args.n, seed=args.seed)
    path = Path(args.table)
    partial = path.with_suffix(".partial.jsonl")  # rows of an interrupted run, one JSON object per line
    kept: dict[str, dict[str, Any]] = {}
    if not args.fresh:
        if path.is_file():
            kept.update((r["arch_yaml"], r) for r in json.loads(path.read_text())["rows"])
        if partial.is_file():
            kept.update((r["arch_yaml"], r) for r in map(json.loads, partial.read_text().splitlines()) if r)
    else:
        partial.unlink(missing_ok=True)
    todo = [a for a in archs if a not in kept]
    if todo and args.no_train:
        print(f"{len(todo)} of the {len(archs)} architecture(s) not in {path} yet: left out (--no-train)")
        archs, todo = [a for a in archs if a in kept], []
    if todo:
        print(f"training {len(todo)} architecture(s) ({len(archs) - len(todo)} read from {path})", flush=True)
        for row in _in_jobs(_train_archs, todo, args.jobs, args.data_dir, args.seed, str(partial)):
            kept[row["arch_yaml"]] = row
    if todo or partial.is_file():
        path.write_text(json.dumps({"budget": FULL_BUDGET, "seed": args.seed, "proxies": list(PROXIES),
                                    "rows": list(kept.values())}, indent=1) + "\n")
        partial.unlink(missing_ok=True)
    diverged = [a for a in archs if kept[a]["val_acc"] is None]
    if diverged:
        print(f"{len(diverged)} architecture(s) diverged in proxy training (non-finite loss): left out")
    rows = [dict(kept[a], acc=kept[a]["val_acc"]) for a in archs if kept[a]["val_acc"] is not None]
    return rows, (f"full_space: {len(archs)} random architectures (seed {args.seed}), batch {args.batch_size}, "
                  f"val_acc after {FULL_BUDGET['epochs']} epochs at {FULL_BUDGET['image_size']}px on the CIFAR-10 "
                  "subset")


def correlations(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{proxy: {"spearman", "kendall", "n"}}`` vs ``acc`` for every proxy, ``macs``, ``params`` and the vote. A NaN
    score (jacob_cov of a network whose output ignores its input) ranks lowest; a proxy undefined for a network
    (``None``: naswot without ReLUs) leaves that network out of its own row only."""
    import numpy as np
    from scipy import stats

    out = {}
    for k in (*PROXIES, "macs", "params", "vote"):
        if k == "vote":
            use = [r for r in rows if all(r[v] is not None for v in VOTE)]
            ranks = [stats.rankdata(np.nan_to_num(np.array([r[v] for r in use], dtype=float), nan=-np.inf))
                     for v in VOTE]
            score = np.mean(ranks, axis=0)
        else:
            use = [r for r in rows if r[k] is not None]
            score = np.nan_to_num(np.array([r[k] for r in use], dtype=float), nan=-np.inf)
        acc = np.array([r["acc"] for r in use], dtype=float)
        out[k] = {"spearman": float(stats.spearmanr(score, acc).statistic),
                  "kendall": float(stats.kendalltau(score, acc).statistic), "n": len(use)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", choices=["nb201", "full"], default="nb201")
    p.add_argument("--n", type=int, default=None, help="random architectures (default 1000 for nb201, 40 for full)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="scoring batch (the authors': 64)")
    p.add_argument("--jobs", type=int, default=1, help="processes, one thread each (default 1)")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (default NAS_DATA_DIR)")
    p.add_argument("--table", default=str(FULL_TABLE), help="full: the table of trained architectures to reuse and "
                   "extend (default bench/data/zero_cost_full.json)")
    p.add_argument("--fresh", action="store_true", help="full: retrain every architecture, ignoring the table")
    p.add_argument("--no-train", action="store_true", help="full: report on the architectures already in the table")
    p.add_argument("--json", default=None, help="also write the correlations and per-architecture rows here")
    args = p.parse_args(argv)
    args.n = args.n or (1000 if args.space == "nb201" else 40)
    _quiet()
    t0 = time.perf_counter()
    rows, title = (_nb201 if args.space == "nb201" else _full)(args)
    wall = time.perf_counter() - t0
    corr = correlations(rows)
    per = sum(r["seconds"] for r in rows) / len(rows)
    print(title)
    print(f"{'proxy':<10} {'spearman':>9} {'kendall':>8} {'n':>5} {'published ρ':>12}")
    for name, c in corr.items():
        pub = f"{PUBLISHED[name]:.2f}" if name in PUBLISHED and args.space == "nb201" else "-"
        print(f"{name:<10} {c['spearman']:>9.3f} {c['kendall']:>8.3f} {c['n']:>5} {pub:>12}")
    print(f"all seven proxies: {per:.2f} s per network on one core (shared passes); wall {wall / 60:.1f} min, "
          f"{args.jobs} job(s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"title": title, "correlations": corr, "seconds_per_network": per,
                                               "rows": [{k: v for k, v in r.items() if k != "arch_yaml"}
                                                        for r in rows]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
