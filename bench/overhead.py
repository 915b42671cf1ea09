"""Search overhead: the same fixed architectures evaluated by `nas search` machinery and by a plain loop.

    .venv/bin/python bench/overhead.py [--trials N] [--epochs E] [--concurrency 1] [--repeats 3] [--no-bare]

Samples a fixed set of architectures from configs/quickstart.yaml's space (seeded, distinct; by default as many as
the quickstart's ``n_trials``, trained for its proxy epochs), then ``--repeats`` times
  1. runs them as a real search (embedded Ray, Ray Tune + OptunaSearch, SQLite storage) with the architectures
     enqueued in that order, and
  2. as bare Ray Tune: the same evaluations in a function trainable (a grid, one reused actor, no searcher, no
     storage): the floor any Ray Tune user pays (its order with step 1 alternates between repeats),
between plain in-process passes with the very same ``ArchEvaluation`` (a repeat's Σ trial work: the mean of the
passes before and after it; this VM's speed drifts by several percent between passes). It prints, per repeat,
search wall time ÷ Σ trial work (1.0 = no overhead), with and without Ray start-up, and where the difference goes:
the first trial (which waits for the trial process to start and import torch, timm and the project) and the
others (each trial's wall time in the storage, ask to tell, against its own work); last, the median over repeats.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _positive(text: str) -> int:
    """An option's value: an integer ≥ 1 (argparse then exits 2 with one line naming the option)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {text!r}")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    ap.add_argument("--trials", type=_positive, default=None, help="default: the config's search.n_trials")
    ap.add_argument("--epochs", type=_positive, default=None, help="default: the config's proxy.epochs")
    ap.add_argument("--concurrency", type=_positive, default=1)
    ap.add_argument("--repeats", type=_positive, default=3,
                    help="searches, each between two plain passes; the median ratio is printed last")
    ap.add_argument("--no-bare", dest="bare", action="store_false",
                    help="skip bare Ray Tune (the same evaluations as a plain function trainable) after each search")
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
    archs = [space.sample(optuna.trial.FixedTrial(p)) for p in params]

    def plain_loop() -> list[float]:
        times = []
        for p in params:
            t0 = time.perf_counter()
            evaluate(space.sample(optuna.trial.FixedTrial(p)))
            times.append(time.perf_counter() - t0)
        return times

    def start_ray(run: Path) -> None:
        init_ray(cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"temp_dir": str(run / "ray")})}))

    def ours(run: Path) -> tuple[float, float, list[float]]:
        """The search: (tune.fit wall, with Ray start-up/shutdown, each trial's span ask → tell)."""
        storage = make_storage(f"sqlite:///{run / 'study.db'}")
        study = optuna.create_study(storage=storage, study_name="overhead", directions=["maximize", "minimize"])
        for p in params:
            study.enqueue_trial(p)
        t0 = time.perf_counter()
        start_ray(run)
        t1 = time.perf_counter()
        run_search(space, evaluate, objectives=cfg.objectives, sampler=optuna.samplers.RandomSampler(seed=0),
                   storage=storage, study_name="overhead", n_trials=args.trials, run_dir=run,
                   max_concurrent=args.concurrency, resources={"cpu": 1}, out=lambda s: None,
                   trial_logs=cfg.ray.trial_logs)
        t2 = time.perf_counter()
        ray.shutdown()
        t3 = time.perf_counter()
        done = [t for t in study.get_trials() if t.state.name == "COMPLETE" and "cached_from" not in t.user_attrs]
        if len(done) != len(params):
            sys.exit(f"the search completed {len(done)} of {len(params)} architectures")
        by_number = sorted(done, key=lambda t: t.number)  # enqueued in the order of `params`
        return t2 - t1, t3 - t0, [(t.datetime_complete - t.datetime_start).total_seconds() for t in by_number]

    def bare(run: Path) -> tuple[float, float]:
        """Ray Tune alone, the peer floor: the same evaluation of the same architectures as a function trainable
        (a grid over them, one actor reused, no searcher, no storage; Tune's per-trial logs as the search's),
        reporting every epoch."""
        from ray import tune

        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "0" if cfg.ray.trial_logs else "1"

        def trainable(config: dict, evaluate: object) -> None:
            final = evaluate(archs[config["i"]], lambda m: tune.report({**m, "done": False}))
            tune.report({**final, "done": True})

        t0 = time.perf_counter()
        start_ray(run)
        t1 = time.perf_counter()
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trainable, evaluate=evaluate), {"cpu": 1}),
            param_space={"i": tune.grid_search(list(range(len(archs))))},
            tune_config=tune.TuneConfig(max_concurrent_trials=args.concurrency, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(run / "bare"), verbose=0))
        grid = tuner.fit()
        t2 = time.perf_counter()
        ray.shutdown()
        t3 = time.perf_counter()
        if grid.num_errors or len(grid) != len(archs):
            sys.exit(f"bare Ray Tune: {grid.num_errors} of {len(grid)} trials failed")
        return t2 - t1, t3 - t0

    print(f"architectures: {args.trials} (fixed, seeded), proxy epochs: {args.epochs}, "
          f"concurrency: {args.concurrency}, repeats: {args.repeats}")
    passes = [plain_loop()]
    rows = []
    for r in range(args.repeats):
        run = tmp / f"run{r}"
        run.mkdir()
        if args.bare and r % 2:  # alternate which of the two runs next to the pass before
            bare_fit, bare_whole = bare(run)
            fit, whole, spans = ours(run)
        else:
            fit, whole, spans = ours(run)
            bare_fit, bare_whole = bare(run) if args.bare else (None, None)
        passes.append(plain_loop())  # a plain pass between repeats: the machine's speed drifts over minutes
        before, after = passes[-2], passes[-1]
        each = [(a + b) / 2 for a, b in zip(before, after)]
        work = sum(each)
        rows.append((fit / work, whole / work, None if bare_fit is None else bare_fit / work))
        print(f"-- repeat {r + 1} (every search completed all {len(spans)} architectures)")
        print(f"plain loop   Σ trial work        {work:8.2f} s   (mean of a pass before the searches, "
              f"{sum(before):.2f} s, and one after, {sum(after):.2f} s)")
        print(f"nas search   tune.fit wall        {fit:8.2f} s   ratio {fit / work:5.2f}")
        print(f"nas search   + ray init/shutdown  {whole:8.2f} s   ratio {whole / work:5.2f}")
        if bare_fit is not None:
            print(f"bare Ray Tune tune.fit wall       {bare_fit:8.2f} s   ratio {bare_fit / work:5.2f}   "
                  f"(+ ray init/shutdown {bare_whole:.2f} s, ratio {bare_whole / work:.2f})")
        if args.concurrency == 1:
            print(f"where it goes: first trial {spans[0]:.2f} s against its work {each[0]:.2f} s "
                  f"(+{spans[0] - each[0]:.2f} s: the trial process starts); the other {len(spans) - 1} "
                  f"{sum(spans[1:]):.2f} s against {sum(each[1:]):.2f} s "
                  f"({(sum(spans[1:]) - sum(each[1:])) / max(1, len(spans) - 1) * 1000:+.0f} ms per trial); "
                  f"between trials {fit - sum(spans):.2f} s in all")
    shutil.rmtree(tmp, ignore_errors=True)
    fits, wholes, bares = zip(*rows)
    print(f"median of {len(rows)}: nas search ratio {statistics.median(fits):.2f} "
          f"({', '.join(f'{x:.2f}' for x in fits)}); + ray init/shutdown {statistics.median(wholes):.2f}"
          + (f"; bare Ray Tune {statistics.median(bares):.2f} ({', '.join(f'{x:.2f}' for x in bares)})"
             if args.bare else ""))
    print(f"(ratio × concurrency = {statistics.median(fits) * args.concurrency:.2f}: the ratio per busy worker, "
          f"Σ work being one at a time)")


if __name__ == "__main__":
    main()
