"""Proxy-guided search (``search.screen``) on NAS-Bench-201: the same searches with and without screening, compared
after the same number of *trained* evaluations, the proxy's own time counted.

Each seed runs one whole ``nas search`` of configs/nb201.yaml on ``[val_acc, macs]`` (Ray Tune, Optuna storage,
export; one trial at a time; search/bench_space.py), once plain and once with ``search.screen: {metric, candidates}``
(the driver scores ``candidates`` proposals with the metric, trains the best, records the others PRUNED and
uncounted). Reported per trained-trial count k, mean ± sd over seeds: the best table accuracy among the first k
trained trials, the fraction of the true front's hypervolume (accuracy ↑, MACs ↓, all 15,625 cells) they reach, and
the wall seconds per trained trial of the whole search (Ray start, screening, look-ups, storage, export).

    python bench/screen.py --samplers random,tpe --seeds 5 --trials 50 [--metric synflow] [--candidates 4] [--json F]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHECKPOINTS = (10, 25, 50, 100)
MO = ["val_acc", "macs"]


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}


def run(*, samplers: list[str], seeds: int, trials: int, metric: str, candidates: int, data_dir: str | None,
        out: Any = print) -> dict[str, Any]:
    """``{sampler: {"off"|"screen": {"best_acc": {k: stats}, "hv_fraction": {k: stats}, "s_per_trial": stats,
    "screened": stats}}}``."""
    from search.bench_space import _config, hypervolume, true_front_hv
    from search.run import search_from_config

    hv_true, ref = true_front_hv()
    ks = [k for k in CHECKPOINTS if k <= trials] or [trials]
    result: dict[str, Any] = {}
    ray_tmp = tempfile.mkdtemp(prefix="nasscr", dir="/tmp")
    with tempfile.TemporaryDirectory(prefix="nas-bench-screen-") as tmp:
        try:
            for sampler in samplers:
                for mode in ("off", "screen"):
                    screen = None if mode == "off" else {"metric": metric, "candidates": candidates}
                    best: dict[int, list[float]] = {k: [] for k in ks}
                    frac: dict[int, list[float]] = {k: [] for k in ks}
                    per, screened = [], []
                    for seed in range(seeds):
                        cfg = _config(sampler=sampler, trials=trials, seed=seed, data_dir=data_dir, ray_tmp=ray_tmp,
                                      counts_file=str(Path(tmp) / "complexity.sqlite"), objectives=MO, screen=screen)
                        t0 = time.perf_counter()
                        study = search_from_config(cfg, run_dir=Path(tmp) / cfg.name, out=lambda s: None)
                        wall = time.perf_counter() - t0
                        trials_ = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
                        points = [(float(t.values[0]), float(t.values[1])) for t in trials_ if t.values is not None]
                        per.append(wall / max(1, len(points)))
                        screened.append(sum("screened_out" in t.user_attrs and "cached_from" not in t.user_attrs
                                            for t in trials_))
                        for k in ks:
                            best[k].append(max(a for a, _ in points[:k]))
                            frac[k].append(hypervolume(points[:k], ref_macs=ref) / hv_true)
                        out(f"{sampler:<7} {mode:<6} seed {seed}: best {best[ks[-1]][-1]:.4f}, hv fraction "
                            f"{frac[ks[-1]][-1]:.4f}, {per[-1]:.2f} s/trained trial, {screened[-1]} screened out")
                    result.setdefault(sampler, {})[mode] = {
                        "best_acc": {str(k): _stats(best[k]) for k in ks},
                        "hv_fraction": {str(k): _stats(frac[k]) for k in ks},
                        "s_per_trial": _stats(per), "screened": _stats([float(s) for s in screened])}
        finally:
            import ray

            ray.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)
    return result


def table(result: dict[str, Any], *, trials: int) -> str:
    ks = [k for k in CHECKPOINTS if k <= trials] or [trials]
    head = "".join(f"{'acc@' + str(k):>17}" for k in ks) + "".join(f"{'hv@' + str(k):>17}" for k in ks)
    lines = [f"{'sampler':<8}{'screen':<8}{head}{'s/trial':>9}{'screened':>10}"]
    for sampler, modes in result.items():
        for mode, r in modes.items():
            cells = "".join(f"{r['best_acc'][str(k)]['mean']:>9.4f} ± {r['best_acc'][str(k)]['sd']:.4f}"
                            for k in ks)
            cells += "".join(f"{r['hv_fraction'][str(k)]['mean']:>9.4f} ± {r['hv_fraction'][str(k)]['sd']:.4f}"
                             for k in ks)
            lines.append(f"{sampler:<8}{mode:<8}{cells}{r['s_per_trial']['mean']:>9.2f}"
                         f"{r['screened']['mean']:>10.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samplers", default="random,tpe", help="comma-separated (default random,tpe)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--trials", type=int, default=50, help="trained evaluations per search (default 50)")
    p.add_argument("--metric", default="synflow", help="the screening metric (default synflow)")
    p.add_argument("--candidates", type=int, default=4, help="proposals scored per trained trial (default 4)")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (default NAS_DATA_DIR)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    from search.samplers import SAMPLERS

    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    bad = [s for s in samplers if s not in SAMPLERS]
    if bad or args.seeds < 1 or args.trials < 1:
        p.error(f"--samplers: unknown {', '.join(bad)}; valid: {', '.join(SAMPLERS.names())}" if bad
                else "--seeds and --trials: must be >= 1")
    from search.errors import ConfigError

    try:
        result = run(samplers=samplers, seeds=args.seeds, trials=args.trials, metric=args.metric,
                     candidates=args.candidates, data_dir=args.data_dir)
    except ConfigError as exc:  # a bad --metric/--candidates: the config's one line, exit 2
        p.error(str(exc))
    print(f"nb201 [val_acc, macs], {args.seeds} seed(s), {args.trials} trained trials, screen: {args.metric} best of "
          f"{args.candidates} (mean ± sd)")
    print(table(result, trials=args.trials))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
