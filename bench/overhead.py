"""Search overhead: the same fixed architectures evaluated by `nas search` machinery and by a plain loop.

    .venv/bin/python bench/overhead.py [--trials N] [--epochs E] [--concurrency 1]

Samples a fixed set of architectures from configs/quickstart.yaml's space (seeded; by default as many as the
quickstart's ``n_trials``, trained for its proxy epochs), then
  1. evaluates each with the very same ``ArchEvaluation`` in a plain in-process loop (Σ trial work: the mean of a
     pass before and one after step 2), and
  2. runs them as a real search (embedded Ray, Ray Tune + OptunaSearch, SQLite storage) with the
     architectures enqueued in that order,
and prints search wall time ÷ Σ trial work (1.0 = no overhead), with and without Ray start-up, and where the
difference goes: the first trial (which waits for the trial process to start and import torch, timm and the
project) and the others (each trial's wall time in the storage, ask to tell, against its own work).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    ap.add_argument("--trials", type=int, default=None, help="default: the config's search.n_trials")
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's proxy.epochs")
    ap.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args()

    import optuna
    import ray
    import torch

    from search import SearchSpace, load_config, make_storage, run_search
    from search.evaluation import ArchEvaluation, load_data
    from search.run import init_ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="nasbench", dir="/tmp"))
    cfg = load_config(args.config)
    args.trials = cfg.search.n_trials if args.trials is None else args.trials
    args.epochs = cfg.proxy.epochs if args.epochs is None else args.epochs
    cfg = cfg.model_copy(update={
        "name": "overhead", "objectives": ["val_acc", "macs"],
        "proxy": cfg.proxy.model_copy(update={"epochs": args.epochs}),
        "search": cfg.search.model_copy(update={"n_trials": args.trials, "max_concurrent": args.concurrency,
                                                "sampler": "random"}),
        "ray": cfg.ray.model_copy(update={"temp_dir": str(tmp / "ray"), "num_cpus": max(2, args.concurrency)}),
    })
    data = load_data(cfg)
    space = SearchSpace(cfg.space, input_size=data.input_size)
    sampler_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=123))
    params, seen = [], set()
    while len(params) < args.trials:  # distinct architectures: a search evaluates a re-drawn one only once
        t = sampler_study.ask()
        arch_id = space.sample(t).arch_id
        sampler_study.tell(t, 0.0)
        if arch_id not in seen:
            seen.add(arch_id)
            params.append(dict(t.params))

    evaluate = ArchEvaluation(cfg, threads=1)
    torch.set_num_threads(1)
    evaluate(space.sample(optuna.trial.FixedTrial(params[0])))  # warm caches (data, allocator) like a reused actor
    def plain_loop() -> list[float]:
        times = []
        for p in params:
            t0 = time.perf_counter()
            evaluate(space.sample(optuna.trial.FixedTrial(p)))
            times.append(time.perf_counter() - t0)
        return times

    before = plain_loop()

    storage = make_storage(f"sqlite:///{tmp / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name="overhead", directions=["maximize", "minimize"])
    for p in params:
        study.enqueue_trial(p)
    t0 = time.perf_counter()
    init_ray(cfg)
    t1 = time.perf_counter()
    run_search(space, evaluate, objectives=cfg.objectives, sampler=optuna.samplers.RandomSampler(seed=0),
               storage=storage, study_name="overhead", n_trials=args.trials, run_dir=tmp,
               max_concurrent=args.concurrency, resources={"cpu": 1}, out=lambda s: None)
    t2 = time.perf_counter()
    ray.shutdown()
    t3 = time.perf_counter()
    after = plain_loop()  # once before and once after the search: the machine's speed drifts over minutes
    each = [(a + b) / 2 for a, b in zip(before, after)]
    work = sum(each)
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE" and "cached_from" not in t.user_attrs]
    shutil.rmtree(tmp, ignore_errors=True)
    by_number = sorted(done, key=lambda t: t.number)  # enqueued in the order of `params`
    spans = [(t.datetime_complete - t.datetime_start).total_seconds() for t in by_number]

    print(f"architectures: {args.trials} (fixed, seeded), proxy epochs: {args.epochs}, "
          f"concurrency: {args.concurrency}, complete: {len(done)}")
    print(f"plain loop   Σ trial work        {work:8.2f} s   (mean of a pass before the search, {sum(before):.2f} s, "
          f"and one after, {sum(after):.2f} s)")
    print(f"nas search   tune.fit wall        {t2 - t1:8.2f} s   ratio {(t2 - t1) / work:5.2f}")
    print(f"nas search   + ray init/shutdown  {t3 - t0:8.2f} s   ratio {(t3 - t0) / work:5.2f}")
    if len(spans) == len(each) and args.concurrency == 1:
        print(f"where it goes: first trial {spans[0]:.2f} s against its work {each[0]:.2f} s "
              f"(+{spans[0] - each[0]:.2f} s: the trial process starts); the other {len(spans) - 1} "
              f"{sum(spans[1:]):.2f} s against {sum(each[1:]):.2f} s "
              f"({(sum(spans[1:]) - sum(each[1:])) / max(1, len(spans) - 1) * 1000:+.0f} ms per trial); "
              f"between trials {(t2 - t1) - sum(spans):.2f} s in all")
    print(f"(ray.init {t1 - t0:.1f} s, ray.shutdown {t3 - t2:.1f} s; ratio × concurrency = "
          f"{(t2 - t1) / work * args.concurrency:.2f}: the ratio per busy worker, Σ work being one at a time)")


if __name__ == "__main__":
    main()
