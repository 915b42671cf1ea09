"""NAS-Bench-201: our samplers through the whole pipeline beside Syne Tune's baselines, on the same table.

Ours: each seed is one whole search of configs/nb201.yaml (Ray Tune, Optuna storage, export; one trial at a time)
in its own folder (``search.bench_space.search_points``), once on ``[val_acc]`` and once on ``[val_acc, macs]``.
Syne Tune 0.16: its schedulers driven in an ask/tell loop (``suggest`` / ``on_trial_complete``) over the same six
categorical parameters, each proposal looked up in the same table (baseline_accuracy / 100) and counted by the same
per-cell MAC table. Single objective: ``baselines.RandomSearch`` and ``baselines.REA`` with its defaults
(population 100, tournament 10); two objectives (accuracy as its negative, MACs, both minimised):
``SingleFidelityScheduler`` with ``MultiObjectiveRandomSearcher`` and with ``MultiObjectiveRegularizedEvolution``
(MOREA; defaults: population 100, tournament 10, non-dominated sorting with ε-net priority). Syne Tune's random
draws use NumPy's global generator, so it is seeded with the run's seed before each run.

Every proposal is a trial on both sides (Syne Tune evaluates a repeat again; ours answers it from the storage).
Reported per trial count k, mean ± sd over seeds: the best accuracy among the first k trials, and the fraction of
the true front's hypervolume (accuracy ↑, MACs ↓ over all 15,625 cells; search/bench_space.py) the first k trials
reach. Random search runs to twice the trials, so the table also gives random's value at 2k.

    python bench/nb201_peers.py --seeds 10 --trials 200
    python bench/nb201_peers.py --seeds 2 --trials 50 --samplers tpe,rea --json peers.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHECKPOINTS = (25, 50, 100, 200)
MO_CHECKPOINTS = (25, 50, 100)
DEFAULT_SAMPLERS = ("random", "tpe", "nsga2", "rea")
PEERS = ("random", "rea")
BASELINE = "random"
MISSING_PEERS = "--peers: syne-tune is not installed; pip install -e '.[peers]' (or pass --no-peers)"
SO, MO = ["val_acc"], ["val_acc", "macs"]


def marks(trials: int, checkpoints: tuple[int, ...]) -> list[int]:
    """The checkpoints up to ``trials`` (``[trials]`` when it is below the first)."""
    return [k for k in checkpoints if k <= trials] or [trials]


def with_doubles(ks: list[int]) -> list[int]:
    """The checkpoints and twice each (random search's columns)."""
    return sorted({*ks, *(2 * k for k in ks)})


def budget(sampler: str, trials: int) -> int:
    """Random search runs twice as long, so its value at 2k can be read beside the others' at k."""
    return 2 * trials if sampler == BASELINE else trials


def mo_budget(sampler: str, trials: int) -> int:
    """Two-objective searches stop at the last MO checkpoint (twice that for random search)."""
    return budget(sampler, min(trials, MO_CHECKPOINTS[-1]))


def best_curve(points: list[tuple[float, float]], ks: list[int]) -> dict[int, float]:
    return {k: max(a for a, _ in points[:k]) for k in ks if k <= len(points)}


def hv_curve(points: list[tuple[float, float]], ks: list[int], *, hv_true: float, ref: float) -> dict[int, float]:
    from search.bench_space import hypervolume

    return {k: hypervolume(points[:k], ref_macs=ref) / hv_true for k in ks if k <= len(points)}


def peer_points(name: str, *, objectives: list[str], trials: int, seed: int,
                lookup: Callable[[tuple[str, ...]], tuple[float, float]]) -> list[tuple[float, float]]:
    """Syne Tune's ``name`` (random | rea) in an ask/tell loop for ``trials`` trials; (val_acc, macs) per trial."""
    import numpy as np
    from syne_tune.backend.trial_status import Trial
    from syne_tune.config_space import choice
    from syne_tune.optimizer.baselines import REA, RandomSearch
    from syne_tune.optimizer.schedulers.multiobjective.multi_objective_regularized_evolution import (
        MultiObjectiveRegularizedEvolution,
    )
    from syne_tune.optimizer.schedulers.searchers.random_searcher import MultiObjectiveRandomSearcher
    from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

    from space.blocks.nb201 import NB201_OPS

    space = {f"e{i}": choice(list(NB201_OPS)) for i in range(6)}
    np.random.seed(seed)
    if objectives == SO:
        cls = {"random": RandomSearch, "rea": REA}[name]
        kw = {"metrics": ["val_acc"]} if cls is RandomSearch else {"metric": "val_acc"}
        scheduler = cls(space, do_minimize=False, random_seed=seed, **kw)
    else:
        searcher = {"random": MultiObjectiveRandomSearcher, "rea": MultiObjectiveRegularizedEvolution}[name]
        scheduler = SingleFidelityScheduler(space, metrics=["neg_val_acc", "macs"], do_minimize=True,
                                            searcher=searcher(space, random_seed=seed), random_seed=seed)
    out = []
    for trial_id in range(trials):
        config = scheduler.suggest().config
        acc, macs = lookup(tuple(config[f"e{i}"] for i in range(6)))
        result = {"val_acc": acc, "neg_val_acc": -acc, "macs": macs}
        scheduler.on_trial_complete(Trial(trial_id=trial_id, config=config, creation_time=None), result)
        out.append((acc, macs))
    return out


def table_lookup() -> Callable[[tuple[str, ...]], tuple[float, float]]:
    """``ops -> (val_acc, macs)`` as the pipeline computes them: the table's baseline accuracy / 100, counted MACs."""
    from evaluators.nb201_table import load_nb201_table
    from search.bench_space import cell_counts

    table, counts = load_nb201_table(), cell_counts()
    return lambda ops: (table[ops].baseline_accuracy / 100, float(counts(ops)[0]))


def run(*, samplers: list[str], peers: bool, seeds: int, trials: int, data_dir: str | None = None,
        results: Path | None = None, out: Callable[[str], None] = print, first_seed: int = 0) -> dict[str, Any]:
    """Every row's per-seed curves: ``{"rows": {row: {"best": {k: [..]}, "hv": {k: [..]}}}, ...}``; rows are
    ``ours <sampler>`` and ``syne-tune <name>``. Our searches run in folders under ``results`` (a temporary one
    when None, removed at the end)."""
    from search.bench_space import search_points, true_front_hv

    hv_true, ref = true_front_hv()
    lookup = table_lookup()
    rows: dict[str, dict[str, dict[int, list[float]]]] = {}

    def add(row: str, kind: str, curve: dict[int, float]) -> None:
        for k, v in curve.items():
            rows.setdefault(row, {"best": {}, "hv": {}})[kind].setdefault(k, []).append(v)

    def record(row: str, seed: int, n: int, so: list[tuple[float, float]], mo: list[tuple[float, float]]) -> None:
        so, mo = so[:n], mo[:n]
        add(row, "best", best_curve(so, with_doubles(marks(trials, CHECKPOINTS))))
        add(row, "hv", hv_curve(mo, with_doubles(marks(trials, MO_CHECKPOINTS)), hv_true=hv_true, ref=ref))
        out(f"{row} seed {seed}: best val_acc {max(a for a, _ in so):.4f}, hv fraction "
            f"{rows[row]['hv'][max(rows[row]['hv'])][-1]:.4f}")

    tmp = Path(tempfile.mkdtemp(prefix="nas-peers-", dir="/tmp"))
    ray_tmp = tempfile.mkdtemp(prefix="nasp", dir="/tmp")
    folder = results if results is not None else tmp
    try:
        for sampler in samplers:
            for seed in range(first_seed, first_seed + seeds):
                n = budget(sampler, trials)
                kw = {"sampler": sampler, "trials": n, "seed": seed, "results": folder, "ray_tmp": ray_tmp,
                      "data_dir": data_dir, "counts_file": str(tmp / "complexity.sqlite")}
                so = search_points(objectives=SO, **kw)
                mo = search_points(objectives=MO, **{**kw, "trials": mo_budget(sampler, trials)})
                record(f"ours {sampler}", seed, n, so, mo)
        for name in PEERS if peers else ():
            for seed in range(first_seed, first_seed + seeds):
                n = budget(name, trials)
                so = peer_points(name, objectives=SO, trials=n, seed=seed, lookup=lookup)
                mo = peer_points(name, objectives=MO, trials=mo_budget(name, trials), seed=seed, lookup=lookup)
                record(f"syne-tune {name}", seed, n, so, mo)
    finally:
        if samplers:
            import ray

            ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    from evaluators.nb201_table import load_nb201_table

    optimum = load_nb201_table().best().baseline_accuracy / 100
    return {"trials": trials, "seeds": seeds, "optimum": optimum, "rows": rows}


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    """``{row: {"best": {k: {mean, sd}}, "hv": {...}}}`` plus the optimum, the trials and the seeds (JSON-ready)."""
    def stats(v: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}

    rows = {row: {kind: {str(k): stats(v) for k, v in sorted(curves[kind].items())} for kind in ("best", "hv")}
            for row, curves in res["rows"].items()}
    return {"trials": res["trials"], "seeds": res["seeds"], "optimum": res["optimum"], "rows": rows,
            "per_seed": res["rows"]}


def format_table(summary: dict[str, Any]) -> str:
    """One table: a row per method, best val_acc at each checkpoint, then hv fraction; random's 2k beneath."""
    trials, rows = summary["trials"], summary["rows"]
    best_ks, hv_ks = marks(trials, CHECKPOINTS), marks(trials, MO_CHECKPOINTS)

    def cell(stat: dict | None) -> str:
        return f"{stat['mean']:.4f}±{stat['sd']:.4f}" if stat else "-"

    head = ["method".ljust(16), *(f"acc@{k}".rjust(15) for k in best_ks), *(f"hv@{k}".rjust(15) for k in hv_ks)]
    lines = [f"NAS-Bench-201 CIFAR-10 table, {summary['seeds']} seed(s), mean±sd; table optimum "
             f"{summary['optimum']:.4f}", " ".join(head)]
    for row, curves in rows.items():
        lines.append(" ".join([row.ljust(16), *(cell(curves["best"].get(str(k))).rjust(15) for k in best_ks),
                               *(cell(curves["hv"].get(str(k))).rjust(15) for k in hv_ks)]))
    for row, curves in rows.items():
        if row.endswith(f" {BASELINE}"):
            at2 = [f"acc@{2 * k} {cell(curves['best'].get(str(2 * k)))}" for k in best_ks]
            at2 += [f"hv@{2 * k} {cell(curves['hv'].get(str(2 * k)))}" for k in hv_ks]
            lines.append(f"{row} at 2x the trials: " + ", ".join(at2))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from search import SAMPLERS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+SEEDS-1 (to add seeds to a run)")
    p.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS),
                   help=f"ours, comma-separated (registered: {', '.join(SAMPLERS.names())}); empty for none")
    p.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True, help="Syne Tune's rows")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (only its shape is used)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = p.parse_args(argv)
    samplers = [s.strip().lower() for s in args.samplers.split(",") if s.strip()]
    unknown = [s for s in samplers if s not in SAMPLERS.names()]
    if unknown:
        p.error(f"--samplers: unknown {', '.join(unknown)}; valid: {', '.join(SAMPLERS.names())}")
    if args.seeds < 1 or args.trials < 1:
        p.error("--seeds/--trials: must be >= 1")
    if args.first_seed < 0:
        p.error(f"--first-seed: must be >= 0, got {args.first_seed}")
    if args.peers:
        try:
            import syne_tune  # noqa: F401
        except ImportError:
            print(f"nb201_peers: error: {MISSING_PEERS}", file=sys.stderr)
            return 2
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summary = summarise(run(samplers=samplers, peers=args.peers, seeds=args.seeds, trials=args.trials,
                            data_dir=args.data_dir, first_seed=args.first_seed))
    print(format_table(summary))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
