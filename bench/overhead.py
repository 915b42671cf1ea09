"""Search overhead: the same fixed architectures evaluated by `nas search` machinery and by a plain loop.

    .venv/bin/python bench/overhead.py [--trials 8] [--epochs 3] [--concurrency 1]

Samples a fixed set of architectures from configs/quickstart.yaml's space (seeded), then
  1. evaluates each with the very same ``ArchEvaluation`` in a plain in-process loop (Σ trial work), and
  2. runs them as a real search (embedded Ray, Ray Tune + OptunaSearch, SQLite storage) with the
     architectures enqueued in that order,
and prints search wall time ÷ Σ trial work (1.0 = no overhead), with and without Ray start-up.
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
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
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
    params = []
    for _ in range(args.trials):
        t = sampler_study.ask()
        space.sample(t)
        params.append(dict(t.params))
        sampler_study.tell(t, 0.0)

    evaluate = ArchEvaluation(cfg, threads=1)
    torch.set_num_threads(1)
    evaluate(space.sample(optuna.trial.FixedTrial(params[0])))  # warm caches (data, allocator) like a reused actor
    work = 0.0
    for p in params:
        t0 = time.perf_counter()
        evaluate(space.sample(optuna.trial.FixedTrial(p)))
        work += time.perf_counter() - t0

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
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"architectures: {args.trials} (fixed, seeded), proxy epochs: {args.epochs}, "
          f"concurrency: {args.concurrency}, complete: {len(done)}")
    print(f"plain loop   Σ trial work        {work:8.2f} s")
    print(f"nas search   tune.fit wall        {t2 - t1:8.2f} s   ratio {(t2 - t1) / work:5.2f}")
    print(f"nas search   + ray init/shutdown  {t3 - t0:8.2f} s   ratio {(t3 - t0) / work:5.2f}")
    print(f"(ray.init {t1 - t0:.1f} s, ray.shutdown {t3 - t2:.1f} s; ratio ÷ concurrency = "
          f"{(t2 - t1) / work * args.concurrency:.2f} is the overhead per busy worker)")


if __name__ == "__main__":
    main()
