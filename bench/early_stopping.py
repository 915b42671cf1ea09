"""Early stopping: the same search with and without MO-ASHA — compute used against hypervolume kept.

    .venv/bin/python bench/early_stopping.py                                  # CIFAR-10 subset, 12 trials × 4 epochs
    .venv/bin/python bench/early_stopping.py --trials 24 --epochs 9 --eta 3
    .venv/bin/python bench/early_stopping.py --data digits --trials 8 --epochs 3  # a quick smoke run

Two real searches (``search_from_config``: embedded Ray, Optuna + SQLite in a temporary folder) with
identical configs — same space, proxy budget, seed, sampler and trial count — except
``scheduler: none`` against ``scheduler: mo_asha`` (search/schedulers/mo_asha.py). With the random sampler
(the default) both runs propose the same architectures in the same order, so the difference is the
scheduler alone; proxy training is seeded and single-threaded, so an architecture that runs to the end
gets the same accuracy in both runs.

Compute = trial-epochs actually trained: ``proxy.epochs`` for a COMPLETE trial, ``pruned_at_epoch`` for
a PRUNED one, 0 for a trial answered from the cache (same architecture already complete) or failed
before training. The summed trial durations (Optuna start to finish: they include each trial's
model build, latency measurement and wait for a worker, and the load of a shared machine) are printed
too, as a rougher second measure.

Hypervolume (Zitzler & Thiele 1998) of each run's final front (COMPLETE trials only — what export
writes): objectives turned into minimisation and scaled to [0, 1] by their minimum and maximum over the
COMPLETE trials of *both* runs, reference point 1.1 on every axis (the convention of
bench/sample_efficiency.py); exact computation by ``search.pareto.hypervolume`` (Optuna's WFG). Measured latency is
noisy, so an architecture's latency is the mean of its measurements over both runs (MACs and accuracy
are deterministic). Aim: ≤ 40 % of the compute for ≥ 90 % of the hypervolume.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def base_config(args: argparse.Namespace, ray_tmp: str) -> dict[str, Any]:
    data: dict[str, Any] = {"name": args.data, "val_fraction": 0.2}
    if args.data == "cifar10":
        data["data_dir"] = args.data_dir
    if args.image_size:
        data["image_size"] = args.image_size
    return {
        "data": data,
        "space": {"strides": [1, 2, 2], "base_widths": args.widths, "width_mult": args.width_mult,
                  "depth": [1, 2], "per_stage": ["depth"], "order": ["pre", "post"], "act": ["relu", "elu"]},
        "objectives": args.objectives,
        "proxy": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr},
        "latency": {"batch_sizes": [1], "warmup": 2, "repeats": 5},
        "search": {"sampler": args.sampler, "n_trials": args.trials, "max_concurrent": args.concurrent,
                   "seed": args.seed},
        "ray": {"num_cpus": args.concurrent, "temp_dir": ray_tmp},
    }


def trial_epochs(t: Any, epochs: int) -> int:
    """Epochs this trial actually trained (see the module docstring)."""
    from optuna.trial import TrialState

    if "cached_from" in t.user_attrs:
        return 0
    if t.state == TrialState.COMPLETE:
        return epochs
    if t.state == TrialState.PRUNED:
        return int(t.user_attrs["pruned_at_epoch"])
    return int(t.user_attrs.get("pruned_at_epoch", 0))  # FAIL: constraint/invalid before training


def hypervolumes(runs: dict[str, list[Any]], objectives: list[str]) -> dict[str, float]:
    """Normalised hypervolume of each run's COMPLETE trials (module docstring)."""
    import numpy as np

    from evaluators import get_metric
    from search.pareto import hypervolume, normalise, reference_point

    cost: dict[tuple[str, str], list[float]] = {}
    for trials in runs.values():
        for t in trials:
            for k, name in enumerate(objectives):
                cost.setdefault((t.user_attrs["arch_id"], name), []).append(t.values[k])

    def point(t: Any) -> list[float]:
        sign = [-1.0 if get_metric(o).direction == "max" else 1.0 for o in objectives]
        return [s * float(np.mean(cost[(t.user_attrs["arch_id"], o)])) for s, o in zip(sign, objectives)]

    pts = {name: np.array([point(t) for t in trials]).reshape(-1, len(objectives)) for name, trials in runs.items()}
    every = np.concatenate(list(pts.values()))
    ref = reference_point(len(objectives))
    return {name: hypervolume(normalise(p, over=every), ref) for name, p in pts.items()}


def main(argv: list[str] | None = None) -> int:
    from search import SAMPLERS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=4, help="proxy epochs = max_t")
    p.add_argument("--eta", type=float, default=3.0, help="MO-ASHA reduction factor")
    p.add_argument("--grace", type=int, default=1, help="MO-ASHA grace period (first rung, epochs)")
    p.add_argument("--sampler", default="random", choices=SAMPLERS.names())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="cifar10", choices=["cifar10", "digits"])
    p.add_argument("--data-dir", default=os.environ.get("NAS_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--image-size", type=int, default=16, help="resize images (0: keep the data set's size)")
    p.add_argument("--widths", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16, 32])
    p.add_argument("--width-mult", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 1.0])
    p.add_argument("--objectives", type=lambda s: s.split(","), default=["val_acc", "macs", "latency_ms"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--concurrent", type=int, default=2, help="trials at a time (= Ray CPUs)")
    p.add_argument("--keep", default=None, help="keep the two run folders here (default: a temp dir, removed)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-trial lines")
    args = p.parse_args(argv)

    import logging
    import warnings

    import optuna
    import ray
    from optuna.trial import TrialState

    from search import parse_config
    from search.run import search_from_config

    warnings.filterwarnings("ignore")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nases", dir="/tmp"))
    ray_tmp = tempfile.mkdtemp(prefix="nasesr", dir="/tmp")  # short: Ray's socket paths are length-limited
    base = base_config(args, ray_tmp)
    out = (lambda s: None) if args.quiet else (lambda s: print("    " + s, flush=True))
    runs: dict[str, dict[str, Any]] = {}
    try:
        for label, sched in (("full", {"name": "none"}),
                             ("mo_asha", {"name": "mo_asha", "grace_period": args.grace,
                                          "reduction_factor": args.eta})):
            cfg = parse_config({**base, "name": f"es-{label}", "scheduler": sched})
            print(f"== {label}: {args.trials} trials × {args.epochs} epochs, scheduler {sched}", flush=True)
            t0 = time.time()
            study = search_from_config(cfg, run_dir=work / cfg.name, out=out)
            runs[label] = {"trials": study.get_trials(), "seconds": time.time() - t0}
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)

    complete = {k: [t for t in r["trials"] if t.state == TrialState.COMPLETE] for k, r in runs.items()}
    hv = hypervolumes(complete, args.objectives)
    print(f"\n{args.data}, objectives {', '.join(args.objectives)}, sampler {args.sampler} seed {args.seed}, "
          f"MO-ASHA η={args.eta:g} grace={args.grace}, {args.trials} trials × {args.epochs} epochs")
    print(f"{'run':<9}{'trial-epochs':>13}{'trial-seconds':>15}{'wall s':>9}{'complete':>10}{'pruned':>8}"
          f"{'front':>7}{'hypervolume':>13}")
    stats = {}
    for k, r in runs.items():
        trials = r["trials"]
        te = sum(trial_epochs(t, args.epochs) for t in trials)
        ts = sum(t.duration.total_seconds() for t in trials if t.duration is not None)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        front = _front_size(complete[k], args.objectives)
        stats[k] = (te, ts)
        print(f"{k:<9}{te:>13}{ts:>15.1f}{r['seconds']:>9.1f}{len(complete[k]):>10}{pruned:>8}{front:>7}"
              f"{hv[k]:>13.4f}")
    (fe, fs), (me, ms) = stats["full"], stats["mo_asha"]
    ce, cs = me / max(fe, 1), ms / max(fs, 1e-9)
    hr = hv["mo_asha"] / hv["full"] if hv["full"] > 0 else float("nan")
    print(f"ratios mo_asha/full: compute {ce:.1%} of trial-epochs ({cs:.1%} of trial-seconds), "
          f"hypervolume {hr:.1%}")
    print(f"aim (≤ 40% compute for ≥ 90% hypervolume): {'met' if ce <= 0.40 and hr >= 0.90 else 'not met'}")
    same = _same_accuracy(runs)
    if same is not None:
        print(f"architectures complete in both runs: {same[0]}, with identical val_acc: {same[1]}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _front_size(trials: list[Any], objectives: list[str]) -> int:
    """Number of non-dominated COMPLETE trials (the exported front)."""
    import numpy as np

    from evaluators import get_metric
    from search.pareto import non_dominated_sort

    if not trials:
        return 0
    sign = np.array([-1.0 if get_metric(o).direction == "max" else 1.0 for o in objectives])
    return int((non_dominated_sort(np.array([t.values for t in trials]) * sign) == 0).sum())


def _same_accuracy(runs: dict[str, dict[str, Any]]) -> tuple[int, int] | None:
    """How many architectures completed in both runs, and how many of them got the very same val_acc."""
    from optuna.trial import TrialState

    acc = [{t.user_attrs["arch_id"]: t.values[0] for t in r["trials"] if t.state == TrialState.COMPLETE}
           for r in runs.values()]
    both = set(acc[0]) & set(acc[1])
    return (len(both), sum(acc[0][a] == acc[1][a] for a in both)) if both else None


if __name__ == "__main__":
    raise SystemExit(main())
