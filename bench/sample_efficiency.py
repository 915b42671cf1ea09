"""Sample efficiency of the samplers: hypervolume after N trials for each registered one (TPE, NSGA-II, random).

    .venv/bin/python bench/sample_efficiency.py                   # the cached table, ~1 min
    .venv/bin/python bench/sample_efficiency.py --objectives val_acc,macs --seeds 10
    .venv/bin/python bench/sample_efficiency.py --build-table      # re-evaluates all 96 (30 min, busy 2 cores)

The evaluation is fixed and cheap: ``bench/data/quickstart_table.json`` holds the results of
evaluating *every* architecture of configs/quickstart.yaml's space (96) once with the search's own
``ArchEvaluation`` (digits, the quickstart proxy budget and seed, CPU latency at batch 1). A search
is then pure Optuna, in-process: the sampler proposes parameters, ``SearchSpace.sample`` turns them
into an architecture, and the objective looks its numbers up in the table. The samplers are the
search's own (every name in ``search.SAMPLERS``, built by ``make_sampler`` for a budget of N trials, so
TPE's start-up and NSGA-II's population follow N as in a real search); a repeated architecture counts
as a trial, as in a real search.

Hypervolume (Zitzler & Thiele 1998): objectives turned into minimisation, each scaled to [0, 1] by
its minimum and maximum over the whole table, reference point 1.1 on every axis; quoted as a
fraction of the hypervolume of the table's true Pareto front (1.0 = the whole front found). The
exact computation is ``search.pareto.hypervolume`` (Optuna's WFG).

Random search is the baseline: one run of ``--random-max`` trials per seed gives it every budget at
once (it samples the same whatever the budget), and the report says how many trials it needs to match
the default sampler's mean hypervolume at each N.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TABLE = ROOT / "bench" / "data" / "quickstart_table.json"
BASELINE = "random"


class _PathTrial:
    """Answers ``suggest_categorical`` from a list of choice indices (0 past its end), recording the calls."""

    def __init__(self, path: Sequence[int]) -> None:
        self.path = list(path)
        self.params: dict[str, Any] = {}
        self.branching: list[int] = []

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        i = len(self.branching)
        k = self.path[i] if i < len(self.path) else 0
        self.branching.append(len(choices))
        self.params[name] = choices[k]
        return choices[k]


def enumerate_space(space: Any) -> list[tuple[dict[str, Any], Any]]:
    """Every ``(params, arch)`` of a define-by-run space, depth first (conditional choices included);
    combinations the spec rejects are left out."""
    from search import InvalidSample

    found, path = [], []
    while True:
        trial = _PathTrial(path)
        try:
            found.append((trial.params, space.sample(trial)))
        except InvalidSample:
            pass
        path = (path + [0] * len(trial.branching))[:len(trial.branching)]
        j = len(path) - 1
        while j >= 0 and path[j] + 1 >= trial.branching[j]:
            j -= 1
        if j < 0:
            return found
        path = path[:j] + [path[j] + 1]


def build_table(config: Path, out: Path, *, threads: int) -> None:
    from search import SearchSpace, load_config
    from search.evaluation import ArchEvaluation, load_data

    cfg = load_config(config)
    data = load_data(cfg)
    space = SearchSpace(cfg.space, input_size=data.input_size)
    archs = enumerate_space(space)
    evaluate = ArchEvaluation(cfg, threads=threads)
    rows, t0 = [], time.perf_counter()
    for i, (params, arch) in enumerate(archs):
        m = evaluate(arch)
        rows.append({"arch_id": arch.arch_id, "choice": params,
                     **{k: m[k] for k in ("val_acc", "macs", "flops", "params", "latency_ms", "train_seconds")}})
        print(f"[{i + 1:>3}/{len(archs)}] {arch.arch_id}  val_acc={m['val_acc']:.4f}  macs={m['macs'] / 1e6:.2f}M  "
              f"latency_ms={m['latency_ms']:.3f}  {time.perf_counter() - t0:6.0f}s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "about": "every architecture of the config's space evaluated once with search.evaluation.ArchEvaluation "
                 "(bench/sample_efficiency.py --build-table)",
        "input_size": data.input_size, "config": cfg.model_dump(mode="json"), "threads": threads,
        "seconds": round(time.perf_counter() - t0, 1), "rows": rows}, indent=1))
    print(f"wrote {len(rows)} rows → {out}")


def normaliser(rows: list[dict], objectives: Sequence[str]) -> Callable[[Sequence[float]], list[float]]:
    """Objective vector → minimisation vector scaled to [0, 1] by the table's range of each objective."""
    import numpy as np

    from evaluators import get_metric
    from search.pareto import normalise

    sign = np.array([-1.0 if get_metric(o).direction == "max" else 1.0 for o in objectives])
    table = sign * np.array([[r[o] for o in objectives] for r in rows], dtype=float)
    return lambda v: normalise(sign * np.asarray(v, dtype=float)[None, :], over=table)[0].tolist()


def hypervolume(points: Sequence[Sequence[float]]) -> float:
    """Exact hypervolume of normalised minimisation points below the reference point (1.1 on every axis)."""
    from search.pareto import hypervolume as exact
    from search.pareto import reference_point

    return exact(points, reference_point(len(points[0]))) if len(points) else 0.0


def sampler_order() -> list[str]:
    """Every registered sampler: the config's default first, the random baseline last."""
    from search import SAMPLERS
    from search.samplers import DEFAULT_SAMPLER

    return sorted(SAMPLERS.names(), key=lambda s: (s == BASELINE, s != DEFAULT_SAMPLER, s))


def run_study(sampler_name: str, *, seed: int, n_trials: int, planned: int, space: Any, lookup: dict,
              objectives: Sequence[str]) -> list[tuple[float, ...]]:
    """Objective vectors of the first ``n_trials`` trials of a study whose sampler was built for ``planned``."""
    import optuna

    from evaluators import get_metric
    from search import make_sampler

    sampler = make_sampler(sampler_name, seed=seed, n_trials=planned)
    directions = ["maximize" if get_metric(o).direction == "max" else "minimize" for o in objectives]
    study = optuna.create_study(directions=directions, sampler=sampler)
    values: list[tuple[float, ...]] = []

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        row = lookup[space.sample(trial).arch_id]
        values.append(tuple(row[o] for o in objectives))
        return values[-1]

    study.optimize(objective, n_trials=n_trials)
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--build-table", action="store_true", help="evaluate every architecture and write --table")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--objectives", default="val_acc,macs,latency_ms")
    ap.add_argument("--trials", default="8,16,32", help="budgets N (comma-separated)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--random-max", type=int, default=300, help="longest random search, for the match count")
    args = ap.parse_args()

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.build_table:
        build_table(args.config, args.table, threads=args.threads)
        return
    print(format_report(**bench(args.table, objectives=args.objectives.split(","),
                                budgets=[int(n) for n in args.trials.split(",")], seeds=args.seeds,
                                random_max=args.random_max)))


def bench(table: Path, *, objectives: Sequence[str], budgets: Sequence[int], seeds: int,
          random_max: int) -> dict[str, Any]:
    """Hypervolume fractions per sampler and budget over ``seeds`` seeds, and random search's match counts."""
    from search import Config, SearchSpace
    from search.samplers import DEFAULT_SAMPLER

    doc = json.loads(Path(table).read_text())
    cfg = Config.model_validate(doc["config"])
    rows = doc["rows"]
    lookup = {r["arch_id"]: r for r in rows}
    space = SearchSpace(cfg.space, input_size=doc["input_size"])
    norm = normaliser(rows, objectives)
    best = hypervolume([norm([r[o] for o in objectives]) for r in rows])
    hv: dict[str, dict[int, list[float]]] = {s: {n: [] for n in budgets} for s in sampler_order()}
    unique: dict[str, dict[int, list[int]]] = {s: {n: [] for n in budgets} for s in hv}
    curves = []
    for seed in range(seeds):
        for s in (s for s in hv if s != BASELINE):
            for n in budgets:
                vals = run_study(s, seed=seed, n_trials=n, planned=n, space=space, lookup=lookup,
                                 objectives=objectives)
                hv[s][n].append(hypervolume([norm(v) for v in vals]) / best)
                unique[s][n].append(len(set(vals)))
        vals = run_study(BASELINE, seed=seed, n_trials=random_max, planned=random_max, space=space, lookup=lookup,
                         objectives=objectives)
        curve = [hypervolume([norm(v) for v in vals[:k]]) / best for k in range(1, random_max + 1)]
        curves.append(curve)
        for n in budgets:
            hv[BASELINE][n].append(curve[n - 1])
            unique[BASELINE][n].append(len(set(vals[:n])))
    mean_curve = [statistics.fmean(c[k] for c in curves) for k in range(random_max)]
    match = {}
    for n in budgets:
        target = statistics.fmean(hv[DEFAULT_SAMPLER][n])
        match[n] = next((k + 1 for k, v in enumerate(mean_curve) if v >= target - 1e-12), None)
    return {"table": str(table), "n_archs": len(rows), "objectives": list(objectives), "seeds": seeds,
            "budgets": list(budgets), "hv": hv, "unique": unique, "match": match, "random_max": random_max}


def format_report(*, table: str, n_archs: int, objectives: list[str], seeds: int, budgets: list[int],
                  hv: dict, unique: dict, match: dict, random_max: int) -> str:
    from evaluators import get_metric
    from search.pareto import REFERENCE
    from search.samplers import DEFAULT_SAMPLER

    arrows = " ".join(f"{o}{'↑' if get_metric(o).direction == 'max' else '↓'}" for o in objectives)
    lines = [f"sample efficiency: {Path(table).name}, {n_archs} architectures, objectives {arrows}, {seeds} seeds",
             f"hypervolume after N trials as a fraction of the true front's (normalised objectives, reference "
             f"{REFERENCE}); mean ± sd [distinct archs]", "",
             f"{'N':>4}  " + "".join(f"{s:>24}" for s in hv)]
    for n in budgets:
        cells = []
        for s in hv:
            v = hv[s][n]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.fmean(v):.3f} ± {sd:.3f} [{statistics.fmean(unique[s][n]):4.1f}]")
        lines.append(f"{n:>4}  " + "".join(f"{c:>24}" for c in cells))
    lines.append("")
    for n in budgets:
        k = match[n]
        got = f"{k} trials ({k / n:.1f}× N)" if k is not None else f"more than {random_max} trials"
        lines.append(f"{BASELINE} search needs {got} to match {DEFAULT_SAMPLER}'s mean hypervolume at N={n}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
