"""``nas bench-space nb201``: repeated searches through the real pipeline on a tabular benchmark.

Each seed runs one whole ``nas search`` (configs/nb201.yaml's space and look-up, the given sampler, Ray Tune,
Optuna storage, export) in a temporary results folder. Reported per trial count k (25/50/100 of ``--trials``),
as mean ± sd over seeds: the best table accuracy among the first k finished trials; the fraction of the true
Pareto front's hypervolume (accuracy ↑ vs MACs ↓) that the first k trials reach, the true front taken over all
15,625 cells (reference point: accuracy 0, the largest cell's MACs); and the orchestration overhead, seconds per
trial of wall time spent outside the evaluators (trials run one at a time, so wall / trials − evaluation time).

Per-cell MACs: every edge of the skeleton's cells sees the same shape, so a cell's MACs and params depend only
on how many edges carry each op: MACs on how many live edges do (whose result reaches the cell's output,
:func:`live_ops`; the traced count leaves dead code out), params on all of them (every module holds its weights).
:func:`cell_counts` counts the 210 such multisets once with the complexity counter and stores them in
``bench/data/nb201_counts.csv`` (tests check the shortcut against direct counts).
"""
from __future__ import annotations

import csv
import itertools
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import yaml

from space.blocks.nb201 import NB201_EDGES, NB201_OPS

ROOT = Path(__file__).resolve().parents[1]
COUNTS_FILE = ROOT / "bench" / "data" / "nb201_counts.csv"
CONFIG_FILE = ROOT / "configs" / "nb201.yaml"
CHECKPOINTS = (25, 50, 100)
SPACES = ("nb201",)


def live_ops(ops: tuple[str, ...]) -> tuple[str, ...]:
    """``ops`` with every edge whose result never reaches the cell's output set to ``none``: such an edge is dead
    code, whose MACs the traced complexity count leaves out (node 3 is the output; node j < 3 reaches it through
    a chain of non-``none`` edges)."""
    reaches = {3}
    for node in (2, 1):
        if any(ops[NB201_EDGES.index((to, node))] != "none" and to in reaches for to in range(node + 1, 4)):
            reaches.add(node)
    return tuple(op if to in reaches else "none" for (to, _), op in zip(NB201_EDGES, ops))


def _multiset(ops: tuple[str, ...]) -> tuple[int, ...]:
    c = Counter(ops)
    return tuple(c[o] for o in NB201_OPS)


def count_multisets() -> dict[tuple[int, ...], tuple[int, int]]:
    """Op counts (in :data:`NB201_OPS` order) → (MACs, params) of the network, counted by the complexity counter."""
    from space import build_model, nb201
    from space.complexity import count_complexity

    out = {}
    for combo in itertools.combinations_with_replacement(NB201_OPS, 6):
        c = count_complexity(build_model(nb201(combo), num_classes=10, in_chans=3), input_size=32, in_chans=3)
        out[_multiset(combo)] = (int(c["macs"]), int(c["params"]))
    return out


def write_counts(path: Path = COUNTS_FILE) -> None:
    """Write the multiset table (``python -c 'from search.bench_space import write_counts; write_counts()'``)."""
    rows = count_multisets()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*NB201_OPS, "macs", "params"])
        for key, (macs, params) in sorted(rows.items()):
            w.writerow([*key, macs, params])


def cell_counts(path: Path = COUNTS_FILE) -> Callable[[tuple[str, ...]], tuple[int, int]]:
    """``f(ops) -> (macs, params)`` for any cell, from the multiset table (counted here when the file is absent)."""
    if path.is_file():
        with open(path) as f:
            table = {tuple(int(r[o]) for o in NB201_OPS): (int(r["macs"]), int(r["params"])) for r in csv.DictReader(f)}
    else:
        table = count_multisets()
    return lambda ops: (table[_multiset(live_ops(tuple(ops)))][0], table[_multiset(tuple(ops))][1])


def hypervolume(points: list[tuple[float, float]], *, ref_macs: float) -> float:
    """Area dominated by ``(acc, macs)`` points (acc ↑, macs ↓) above accuracy 0 and below ``ref_macs``."""
    area, best = 0.0, 0.0
    for acc, macs in sorted((p for p in points if p[1] <= ref_macs), key=lambda p: p[1]):
        if acc > best:
            area += (acc - best) * (ref_macs - macs)
            best = acc
    return area


def true_front_hv() -> tuple[float, float]:
    """(hypervolume of all 15,625 cells, reference MACs)."""
    from evaluators.nb201_table import load_nb201_table

    table, counts = load_nb201_table(), cell_counts()
    points = [(e.baseline_accuracy / 100, float(counts(ops)[0])) for ops, e in table.items()]
    ref = max(m for _, m in points)
    return hypervolume(points, ref_macs=ref), ref


def _config(*, sampler: str, trials: int, seed: int, data_dir: str | None, ray_tmp: str,
            counts_file: str | None = None, objectives: list[str] | None = None,
            screen: dict[str, Any] | None = None) -> Any:
    """configs/nb201.yaml for one seeded search, one trial at a time; ``counts_file``: a complexity count cache
    shared by the searches (evaluators/complexity.py), so each cell is counted once per bench run; ``screen``:
    ``search.screen`` (proxy-guided search, e.g. ``{"metric": "synflow", "candidates": 4}``; None: off)."""
    from .config import parse_config

    raw = yaml.safe_load(CONFIG_FILE.read_text())
    if counts_file is not None:
        raw.setdefault("evaluators", {})["complexity"] = {"cache_file": counts_file}
    raw["name"] = f"bench-{sampler}-s{seed}" + ("" if objectives is None else "-" + "-".join(objectives)) + \
        ("" if screen is None else f"-screen-{screen['metric']}")
    if objectives is not None:
        raw["objectives"] = list(objectives)
    raw["data"] = {"name": "cifar10", "data_dir": data_dir}
    raw["search"] = {"sampler": sampler, "n_trials": trials, "max_concurrent": 1, "seed": seed,
                     **({} if screen is None else {"screen": dict(screen)})}
    raw["ray"] = {"num_cpus": 1, "cpus_per_trial": 1, "temp_dir": ray_tmp, "trial_logs": False}
    return parse_config(raw)


def one_search(cfg: Any, results: Path) -> tuple[list[tuple[float, float]], float]:
    """Run one search; return its trials' (val_acc, macs) in trial order and the overhead in s/trial (either metric
    may be an objective or only recorded)."""
    from .run import search_from_config

    t0 = time.perf_counter()
    study = search_from_config(cfg, run_dir=results / cfg.name, out=lambda s: None)
    wall = time.perf_counter() - t0
    done = sorted((t for t in study.get_trials(deepcopy=False) if t.values is not None), key=lambda t: t.number)
    evals = sum(float(t.user_attrs.get("eval_seconds", 0.0)) for t in done)
    def metric(t: Any, name: str) -> float:
        return float(t.values[cfg.objectives.index(name)] if name in cfg.objectives else t.user_attrs[name])

    return [(metric(t, "val_acc"), metric(t, "macs")) for t in done], (wall - evals) / max(1, len(done))


def search_points(*, sampler: str, trials: int, seed: int, objectives: list[str], results: Path, ray_tmp: str,
                  data_dir: str | None = None, counts_file: str | None = None,
                  screen: dict[str, Any] | None = None) -> list[tuple[float, float]]:
    """One search of configs/nb201.yaml on ``objectives`` in its own folder under ``results``; its trials'
    (val_acc, macs) in trial order (a re-proposal answered from the storage is a trial too; a candidate screened
    out is not: it has no values). ``counts_file``: a complexity count cache shared with other searches;
    ``screen``: ``search.screen`` (:func:`_config`)."""
    cfg = _config(sampler=sampler, trials=trials, seed=seed, data_dir=data_dir, ray_tmp=ray_tmp,
                  objectives=objectives, counts_file=counts_file, screen=screen)
    return one_search(cfg, results)[0]


def bench_space(space: str = "nb201", *, sampler: str = "tpe", trials: int = 100, seeds: int = 10,
                data_dir: str | None = None, screen: dict[str, Any] | None = None,
                out: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Run ``seeds`` searches of ``trials`` trials; return ``{best_acc, hv_fraction, overhead_s_per_trial}``, each
    keyed by trial count with ``{"mean", "sd"}`` (overhead: one value for the whole run, keyed by ``trials``).
    ``screen``: ``search.screen`` for every search (:func:`_config`); the driver's screening time is part of the
    overhead (trials counts the trained ones)."""
    if space not in SPACES:
        raise ValueError(f"space: must be one of {', '.join(SPACES)}, got {space!r}")
    hv_true, ref = true_front_hv()
    marks = [k for k in CHECKPOINTS if k <= trials] or [trials]
    best: dict[int, list[float]] = {k: [] for k in marks}
    frac: dict[int, list[float]] = {k: [] for k in marks}
    overhead: list[float] = []
    ray_tmp = tempfile.mkdtemp(prefix="nasbs", dir="/tmp")
    with tempfile.TemporaryDirectory(prefix="nas-bench-space-") as tmp:
        try:
            for seed in range(seeds):
                cfg = _config(sampler=sampler, trials=trials, seed=seed, data_dir=data_dir, ray_tmp=ray_tmp,
                              counts_file=str(Path(tmp) / "complexity.sqlite"), screen=screen)
                points, over = one_search(cfg, Path(tmp))
                overhead.append(over)
                for k in marks:
                    best[k].append(max(a for a, _ in points[:k]))
                    frac[k].append(hypervolume(points[:k], ref_macs=ref) / hv_true)
                out(f"seed {seed}: best val_acc {best[marks[-1]][-1]:.4f}, hv fraction {frac[marks[-1]][-1]:.4f}, "
                    f"overhead {over:.3f} s/trial")
        finally:
            import ray

            ray.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)

    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}

    return {"best_acc": {str(k): stats(best[k]) for k in marks},
            "hv_fraction": {str(k): stats(frac[k]) for k in marks},
            "overhead_s_per_trial": {str(trials): stats(overhead)}}
