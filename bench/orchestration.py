"""Orchestration overhead per trial, when a trial does (almost) no work: NAS-Bench-201 table look-ups.

    .venv/bin/python bench/orchestration.py                     # 1,000 trials, 2 at a time
    .venv/bin/python bench/orchestration.py --trials 200 --concurrency 1

Needs the optional extra ``nb201`` (the table). Every side draws architectures of configs/nb201.yaml's space with
the same seeded random sampler (Optuna's ``RandomSampler``: the same sequence, whatever the storage) and evaluates
them with the very same ``ArchEvaluation`` (table look-up for ``val_acc``; MACs read from a complexity count cache
filled beforehand, evaluators/complexity.py), in four ways:

1. a plain in-process loop: Σ trial work, the time the evaluations themselves take;
2. a plain Optuna ``study.optimize`` loop (one at a time) on a SQLite storage, once with Optuna's default SQLite
   settings and once with our storage (search/storage.py: write-ahead log);
3. bare Ray Tune: a function trainable that reports a constant, the same number of trials and concurrency,
   reused actors, no searcher and no storage (the floor Ray Tune itself costs here);
4. ``nas search``'s machinery (search/run.py ``run_search``: embedded Ray, Ray Tune + our Optuna searcher,
   heartbeats and lease, SQLite storage), ``--concurrency`` at a time (a re-drawn architecture is answered from
   the storage and drawn again, as in a search: N distinct architectures).

(Enqueuing the N architectures instead would measure Optuna's ``enqueue_trial``: every ``ask`` then scans all
waiting trials, ~0.3 s per trial at N = 1,000.)

Overhead per trial = (wall − Σ work ÷ concurrency) ÷ N; Ray start-up and shutdown are timed apart and excluded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bare_tune(n: int, concurrency: int, storage_path: Path) -> float:
    """Wall seconds of ``n`` Ray Tune trials that only report a constant (Ray already started)."""
    from ray import tune

    def trainable(config: dict) -> None:
        tune.report({"val_acc": config["x"], "done": True})

    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), param_space={"x": tune.uniform(0, 1)},
                       tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=concurrency,
                                                   reuse_actors=True),
                       run_config=tune.RunConfig(storage_path=str(storage_path), verbose=0))
    t0 = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trial-logs", action="store_true", help="keep Ray Tune's per-trial logs (ray.trial_logs)")
    ap.add_argument("--statements", action="store_true",
                    help="also count the driver's SQL statements and commits per trial of the nas search row, by "
                         "statement kind and table (SQLAlchemy's events)")
    args = ap.parse_args()

    import optuna
    import ray
    import yaml

    from evaluators.nb201_table import load_nb201_table
    from search import SearchSpace, make_storage, run_search
    from search.bench_space import CONFIG_FILE
    from search.config import parse_config
    from search.evaluation import ArchEvaluation, load_data
    from search.lease import StudyLease
    from search.run import init_ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    load_nb201_table()  # a one-line error now when the extra is missing
    tmp = Path(tempfile.mkdtemp(prefix="nasorch", dir="/tmp"))
    raw = yaml.safe_load(CONFIG_FILE.read_text())
    raw.update(name="orchestration", evaluators={**raw.get("evaluators", {}),
                                                 "complexity": {"cache_file": str(tmp / "counts.sqlite")}})
    if os.environ.get("NAS_DATA_DIR"):  # the config's relative data_dir is relative to the repository
        raw["data"]["data_dir"] = None
    else:
        raw["data"]["data_dir"] = str((ROOT / raw["data"]["data_dir"]).resolve())
    raw["search"] = {"sampler": "random", "n_trials": args.trials, "max_concurrent": args.concurrency,
                     "seed": args.seed}
    raw["ray"] = {"num_cpus": max(2, args.concurrency), "cpus_per_trial": 1, "temp_dir": str(tmp / "ray"),
                  "trial_logs": args.trial_logs}
    cfg = parse_config(raw)
    data = load_data(cfg)
    space = SearchSpace(cfg.space, input_size=data.input_size)

    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    params, seen = [], set()
    while len(params) < args.trials:
        t = draw.ask()
        arch = space.sample(t)
        draw.tell(t, 0.0)
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            params.append(dict(t.params))
    fill = ArchEvaluation(cfg, threads=1)
    for p in params:  # count every architecture's MACs once into the shared cache (not timed)
        fill(space.sample(optuna.trial.FixedTrial(p)))

    evaluate = ArchEvaluation(cfg, threads=1)  # a fresh one: reads the cache file, as each trial process does
    t0 = time.perf_counter()
    for p in params:
        evaluate(space.sample(optuna.trial.FixedTrial(p)))
    work = time.perf_counter() - t0

    def plain_optuna(storage: optuna.storages.BaseStorage) -> float:
        study = optuna.create_study(storage=storage, study_name="plain", directions=["maximize", "minimize"],
                                    sampler=optuna.samplers.RandomSampler(seed=args.seed))
        ev = ArchEvaluation(cfg, threads=1)

        def objective(trial: optuna.Trial) -> tuple[float, float]:
            m = ev(space.sample(trial))
            return m["val_acc"], m["macs"]

        t = time.perf_counter()
        study.optimize(objective, n_trials=args.trials)
        return time.perf_counter() - t

    optuna_default = plain_optuna(optuna.storages.RDBStorage(f"sqlite:///{tmp / 'plain-default.db'}"))
    optuna_wal = plain_optuna(make_storage(f"sqlite:///{tmp / 'plain-wal.db'}"))

    t0 = time.perf_counter()
    init_ray(cfg)
    ray_start = time.perf_counter() - t0
    bare = bare_tune(args.trials, args.concurrency, tmp / "bare")

    storage = make_storage(f"sqlite:///{tmp / 'study.db'}", heartbeat=True)
    study = optuna.create_study(storage=storage, study_name="orchestration", directions=["maximize", "minimize"])
    kinds: dict[str, int] = {}
    if args.statements:
        import re

        from sqlalchemy import event

        def count(conn, cursor, statement, *rest) -> None:
            m = re.match(r"\s*(\w+)\b.*?\b(?:FROM|INTO|UPDATE)\s+(\w+)", statement, re.S | re.I)
            key = f"{m.group(1).upper()} {m.group(2)}" if m else statement.split()[0].upper()
            kinds[key] = kinds.get(key, 0) + 1

        event.listen(storage.engine, "before_cursor_execute", count)
        event.listen(storage.engine, "commit", lambda conn: kinds.__setitem__("(commit)", kinds.get("(commit)", 0) + 1))
    lease = StudyLease.acquire(study)
    t0 = time.perf_counter()
    try:
        run_search(space, evaluate, objectives=cfg.objectives, sampler=optuna.samplers.RandomSampler(seed=args.seed),
                   storage=storage, study_name="orchestration", n_trials=args.trials, run_dir=tmp,
                   max_concurrent=args.concurrency, resources={"cpu": 1}, out=lambda s: None, lease=lease,
                   trial_logs=args.trial_logs)
        ours = time.perf_counter() - t0
    finally:
        lease.release()
    done = sum(t.state.name == "COMPLETE" and "cached_from" not in t.user_attrs
               for t in study.get_trials(deepcopy=False))
    t0 = time.perf_counter()
    ray.shutdown()
    ray_stop = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)

    n, c = args.trials, args.concurrency
    print(f"orchestration: {n} NAS-Bench-201 table trials (seed {args.seed}), nas search {c} at a time, "
          f"{done} complete; Σ trial work {work:.2f} s ({work / n * 1000:.1f} ms/trial)")
    print(f"{'':34}{'wall s':>9}{'overhead ms/trial':>19}")
    rows = [("plain Optuna, default SQLite", optuna_default, 1), ("plain Optuna, our storage (WAL)", optuna_wal, 1),
            (f"bare Ray Tune, {c} at a time", bare, None), (f"nas search, {c} at a time", ours, c)]
    for name, wall, conc in rows:
        over = (wall - (work / conc if conc else 0.0)) / n
        print(f"{name:34}{wall:9.2f}{over * 1000:19.1f}")
    if kinds:
        print(f"driver's SQL per trial (nas search row): {sum(v for k, v in kinds.items() if k != '(commit)') / n:.1f} "
              f"statements, {kinds.get('(commit)', 0) / n:.1f} commits")
        for key, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"  {key:44}{v / n:8.2f}")
    print(f"(Ray start {ray_start:.1f} s and shutdown {ray_stop:.1f} s not included; bare Ray Tune does no work; "
          f"per-trial Ray Tune logs {'on' if args.trial_logs else 'off'})")


if __name__ == "__main__":
    main()
