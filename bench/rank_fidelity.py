"""Rank fidelity of a search's cheap evaluation: does the ranking it produces survive a long training?

    .venv/bin/python bench/rank_fidelity.py                     # resumes bench/data/cifar10_rank_fidelity.json
    .venv/bin/python bench/rank_fidelity.py --archs 16 --jobs 2 --long-factor 10

``--archs`` distinct architectures are drawn by Optuna's random sampler (``--sample-seed``) from ``--config``'s
space (default configs/cifar10_search.yaml, the CPU-hour CIFAR-10 search), so they are a uniform sample of what the
search can propose, not of what it kept. Each one is evaluated three ways, all on the config's data (its image
size, validation split and seed), single-threaded and seeded, so on the CPU each number is a pure function of
``(arch, budget, seed)``:

- **zero-cost**: every proxy of :mod:`evaluators.zero_cost` on one un-augmented training batch of 64 images (the
  network built with the config's seed), plus ``macs`` and ``params``;
- **proxy**: the search's own evaluation (``search.evaluation.ArchEvaluation`` of the config, objectives val_acc and
  macs, so no latency is timed): ``proxy.epochs`` epochs, cosine over them, the validation accuracy recorded after
  every epoch. ``epoch1`` is the value at the first epoch, the one MO-ASHA's first rung reads (grace period 1);
  ``final`` the value at the last epoch, what a trial that survives every rung reports;
- **long**: the same evaluation with ``--long-factor`` × ``proxy.epochs`` epochs (default 10×; its cosine spans
  the whole long budget): the ranking the cheap signals are judged against;
- **other proxy budgets** (``--proxy-epochs 9``, optional): the search's evaluation with ``proxy.epochs = k`` (its
  cosine over k epochs), signal ``final@k``: what a search with a longer final rung would read. Added to an existing
  table without retraining anything else.

The table prints, per cheap signal, Kendall's τ-b (``scipy.stats.kendalltau``), its 90% bootstrap interval
(2,000 resamples of the architectures, seeded) and Spearman's ρ with the long training's final validation accuracy.
A network whose training diverged (non-finite loss) keeps ``None`` there
and is left out. Resumable: the file is rewritten (atomically) after every architecture, a rerun trains only the
architectures not in it, and a rerun with other settings stops with a one-line error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
TABLE = ROOT / "bench" / "data" / "cifar10_rank_fidelity.json"
CONFIG = ROOT / "configs" / "cifar10_search.yaml"
PROXIES = ("synflow", "jacob_cov", "naswot", "grad_norm", "snip", "grasp", "fisher")
SIGNALS = ("epoch1", "final", *PROXIES, "macs", "params")
"""The cheap signals, in the table's order: the search's first rung, its final rung, each zero-cost proxy, the
complexity counts."""
SCORE_BATCH = 64


def bench_config(config: Path, *, epochs: int | None = None, data_dir: str | None = None) -> Any:
    """``config`` as the bench trains it: objectives val_acc and macs (no latency is timed), no scheduler (every
    epoch is run and recorded), ``proxy.epochs = epochs`` when given; everything else as the config has it."""
    from search import load_config, parse_config

    doc = load_config(config).model_dump(mode="json")
    doc["objectives"] = ["val_acc", "macs"]
    doc["scheduler"] = {"name": "none"}
    doc["select"] = {}
    doc["constraints"] = {}
    if epochs is not None:
        doc["proxy"]["epochs"] = int(epochs)
    if data_dir is not None:
        doc["data"]["data_dir"] = data_dir
    return parse_config(doc)


def sample_archs(cfg: Any, n: int, *, seed: int) -> list[Any]:
    """``n`` distinct architectures drawn by Optuna's seeded random sampler from ``cfg``'s space, in draw order."""
    import optuna

    from search import SearchSpace, sample_archs
    from search.evaluation import load_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    archs = sample_archs(SearchSpace(cfg.space, input_size=load_data(cfg).input_size), n, seed=seed)
    if len(archs) < n:
        raise SystemExit(f"--archs: the space gave only {len(archs)} distinct architectures in {50 * n} draws")
    return archs


def _curve(evaluate: Any, arch: Any) -> tuple[list[float] | None, dict[str, Any], float, str | None]:
    """Per-epoch val_acc, the final metrics and the seconds of one evaluation; ``(None, {}, s, reason)`` when the
    training diverged."""
    from train.engine import NonFiniteLossError

    curve: list[float] = []

    def report(m: dict[str, Any]) -> None:
        if int(m["epoch"]) != len(curve) + 1:
            raise RuntimeError(f"epoch: expected {len(curve) + 1}, got {m['epoch']}")
        curve.append(float(m["val_acc"]))

    t0 = time.perf_counter()
    try:
        final = evaluate(arch, report)
    except NonFiniteLossError as exc:
        return None, {}, time.perf_counter() - t0, str(exc).splitlines()[0][:200]
    return curve, final, time.perf_counter() - t0, None


def measure(arch_yaml: str, config: str, long_factor: int, data_dir: str | None) -> dict[str, Any]:
    """One architecture's row: zero-cost scores, the proxy curve, the long curve (run in a worker process)."""
    import logging
    import warnings

    import torch

    from evaluators.zero_cost import score_all
    from evaluators.zero_cost_metrics import training_batch
    from search.evaluation import ArchEvaluation, load_data
    from space import Arch, build_model

    warnings.filterwarnings("ignore")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    arch = Arch.from_yaml(arch_yaml)
    proxy_cfg = bench_config(Path(config), data_dir=data_dir)
    long_cfg = bench_config(Path(config), epochs=long_factor * proxy_cfg.proxy.epochs, data_dir=data_dir)
    seed = proxy_cfg.search.seed
    batch = training_batch(load_data(proxy_cfg), batch_size=SCORE_BATCH, val_fraction=proxy_cfg.data.val_fraction,
                           seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(arch, num_classes=load_data(proxy_cfg).num_classes, in_chans=batch[0].shape[1])
    t0 = time.perf_counter()
    relus = any("ReLU" in type(m).__name__ for m in model.modules())
    names = [p for p in PROXIES if relus or p != "naswot"]  # naswot's codes are ReLU signs: undefined without
    scores: dict[str, Any] = {"naswot": None, **score_all(names, model, batch, seed=seed)}
    scores = {k: (None if v is None or v != v else float(v)) for k, v in scores.items()}  # NaN → None (JSON)
    zc_seconds = time.perf_counter() - t0
    row: dict[str, Any] = {"arch_id": arch.arch_id, "arch_yaml": arch_yaml, **scores,
                           "zero_cost_seconds": round(zc_seconds, 2)}
    curve, final, seconds, error = _curve(ArchEvaluation(proxy_cfg, threads=1), arch)
    row.update(proxy_curve=curve, proxy_seconds=round(seconds, 2))
    if final:
        row.update(macs=float(final["macs"]), params=float(final["params"]))
    long_curve, _, long_seconds, long_error = _curve(ArchEvaluation(long_cfg, threads=1), arch)
    row.update(long_curve=long_curve, long_seconds=round(long_seconds, 2), error=error or long_error)
    return row


def measure_budget(arch_yaml: str, config: str, epochs: int, data_dir: str | None) -> dict[str, Any]:
    """The search's evaluation of one architecture with ``proxy.epochs = epochs`` (run in a worker process)."""
    import warnings

    import torch

    from search.evaluation import ArchEvaluation
    from space import Arch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    arch = Arch.from_yaml(arch_yaml)
    curve, _, seconds, error = _curve(ArchEvaluation(bench_config(Path(config), epochs=epochs, data_dir=data_dir),
                                                     threads=1), arch)
    return {"arch_id": arch.arch_id, "epochs": epochs, "curve": curve, "seconds": round(seconds, 2), "error": error}


def signal_values(row: dict[str, Any]) -> dict[str, float | None]:
    """``{signal: value}`` of one row (None where undefined: a diverged run, naswot without ReLUs, a NaN)."""
    curve = row.get("proxy_curve")
    out: dict[str, float | None] = {"epoch1": curve[0] if curve else None, "final": curve[-1] if curve else None}
    for k in (*PROXIES, "macs", "params"):
        out[k] = row.get(k)
    for k, budget in sorted((row.get("budgets") or {}).items(), key=lambda kv: int(kv[0])):
        out[f"final@{k}"] = budget["curve"][-1] if budget.get("curve") else None
    return out


BOOTSTRAP = 2000
"""Resamples (of the architectures, with replacement) behind each τ's 90% interval."""


def tau_interval(s: Any, t: Any, *, resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """The 5th and 95th percentiles of Kendall's τ-b over bootstrap resamples of the pairs ``(s_i, t_i)`` (seeded;
    resamples where τ is undefined, e.g. all values tied, are dropped): how far 12 architectures pin τ down."""
    import numpy as np
    from scipy import stats

    s, t = np.asarray(s, dtype=float), np.asarray(t, dtype=float)
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(resamples):
        i = rng.integers(0, len(s), len(s))
        tau = stats.kendalltau(s[i], t[i]).statistic
        if tau == tau:
            taus.append(tau)
    lo, hi = np.percentile(taus, [5, 95]) if taus else (float("nan"), float("nan"))
    return float(lo), float(hi)


def fidelity(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{signal: {"kendall", "spearman", "n", "kendall_90"}}`` against the long training's final validation accuracy
    (``kendall_90``: :func:`tau_interval`); a row enters a signal's line only where both are defined."""
    from scipy import stats

    out: dict[str, dict[str, Any]] = {}
    budgets = sorted({int(k) for r in rows for k in (r.get("budgets") or {})})
    for name in (*SIGNALS[:2], *(f"final@{k}" for k in budgets), *SIGNALS[2:]):
        pairs = [(signal_values(r).get(name), r["long_curve"][-1]) for r in rows if r.get("long_curve")]
        pairs = [(s, t) for s, t in pairs if s is not None]
        if len(pairs) < 3:
            out[name] = {"kendall": float("nan"), "spearman": float("nan"), "n": len(pairs),
                         "kendall_90": [float("nan")] * 2}
            continue
        s, t = zip(*pairs)
        out[name] = {"kendall": float(stats.kendalltau(s, t).statistic),
                     "spearman": float(stats.spearmanr(s, t).statistic), "n": len(pairs),
                     "kendall_90": list(tau_interval(s, t))}
    return out


def long_epoch_fidelity(rows: list[dict[str, Any]], epochs: list[int], *,
                        budget: int | None = None) -> dict[int, dict[str, float]]:
    """``{k: {"kendall", "spearman", "n"}}``: the long training's own validation accuracy after epoch ``k`` against
    its end. A diagnostic of how long a proxy must train for its ranking to hold; it is not a k-epoch proxy (that
    one's cosine ends at epoch k, the long run's is still at a high learning rate there), so it reads as a lower
    bound on what a k-epoch proxy would give only where the long curves do not cross late.

    With ``budget``: the ``budget``-epoch proxy's own accuracy after epoch ``k`` (its cosine spans ``budget``
    epochs) against the long training's end — what an early-stopping rung at epoch ``k`` reads in a search whose
    proxy trains ``budget`` epochs. Rows without a complete curve of that budget are left out."""
    from scipy import stats

    out: dict[int, dict[str, float]] = {}
    done = [r for r in rows if r.get("long_curve")]
    full = max((len(r["long_curve"]) for r in done), default=0)
    done = [r for r in done if len(r["long_curve"]) == full]  # complete long trainings only
    if budget is None:
        pairs_of = [(r["long_curve"], r["long_curve"][-1]) for r in done]
    else:
        curves = [(((r.get("budgets") or {}).get(str(budget)) or {}).get("curve"), r["long_curve"][-1]) for r in done]
        pairs_of = [(c, end) for c, end in curves if c and len(c) == budget]
    for k in epochs:
        pairs = [(c[k - 1], end) for c, end in pairs_of]
        if len(pairs) < 3:
            out[k] = {"kendall": float("nan"), "spearman": float("nan"), "n": len(pairs)}
            continue
        s, t = zip(*pairs)
        out[k] = {"kendall": float(stats.kendalltau(s, t).statistic),
                  "spearman": float(stats.spearmanr(s, t).statistic), "n": len(pairs)}
    return out


RUNGS = (1, 3, 9, 27, 81)
"""MO-ASHA's rungs at the config's grace period 1 and η = 3: the epochs at which a search stops trials early."""


def rebuild_command(args: argparse.Namespace) -> str:
    budgets = f" --proxy-epochs {' '.join(map(str, args.proxy_epochs))}" if args.proxy_epochs else ""
    return (f".venv/bin/python bench/rank_fidelity.py --config {os.path.relpath(args.config, ROOT)} --archs "
            f"{args.archs} --sample-seed {args.sample_seed} --long-factor {args.long_factor}{budgets} --jobs "
            f"{args.jobs} --out {os.path.relpath(args.out, ROOT)}")


def header(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    return {"about": f"cheap signals vs a {args.long_factor}x longer training of random architectures of "
                     f"{os.path.relpath(args.config, ROOT)}'s space (bench/rank_fidelity.py); rebuild or resume: "
                     f"{rebuild_command(args)}",
            "command": rebuild_command(args), "long_factor": args.long_factor, "sample_seed": args.sample_seed,
            "proxy_epochs": cfg.proxy.epochs, "long_epochs": args.long_factor * cfg.proxy.epochs,
            "space": cfg.space.model_dump(mode="json"), "proxy": cfg.proxy.model_dump(mode="json"),
            "seed": cfg.search.seed,
            "data": {k: v for k, v in cfg.data.model_dump(mode="json").items() if k != "data_dir"}}


SETTINGS = ("long_factor", "sample_seed", "proxy_epochs", "space", "proxy", "seed", "data")
"""What a table's numbers depend on (the architectures drawn and how each is trained); a rerun must match them."""


def _differences(key: str, built: Any, asked: Any) -> list[str]:
    if isinstance(built, dict) and isinstance(asked, dict):
        return [d for k in sorted(set(built) | set(asked)) for d in _differences(f"{key}.{k}", built.get(k),
                                                                                  asked.get(k))]
    return [] if built == asked else [f"{key}: built with {built!r}, this run asks {asked!r}"]


def load_existing(out: Path, head: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows already in ``out`` (none if absent); exits on a file built with other settings."""
    if not out.exists():
        return []
    doc = json.loads(out.read_text())
    diff = [d for key in SETTINGS for d in _differences(key, doc.get(key), head[key])]
    if diff:
        raise SystemExit(f"{out.name}: {'; '.join(diff)} (use another --out or the same settings)")
    return doc["rows"]


def write(out: Path, head: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({**head, "rows": rows}, indent=None, separators=(",", ":")) + "\n")
    os.replace(tmp, out)


def print_table(rows: list[dict[str, Any]], head: dict[str, Any], out: Any = print) -> dict[str, dict[str, float]]:
    res = fidelity(rows)
    done = [r for r in rows if r.get("long_curve")]
    out(f"{len(done)} architecture(s) with a long training ({head['long_epochs']} epochs) against their cheap "
        f"signals (proxy {head['proxy_epochs']} epochs; {len(rows) - len(done)} without)")
    out(f"{'signal':<10} {'kendall τ':>9} {'τ 90% (bootstrap)':>18} {'spearman ρ':>10} {'n':>4}")
    for name, r in res.items():
        lo, hi = r["kendall_90"]
        out(f"{name:<10} {r['kendall']:>9.3f} {f'[{lo:.2f}, {hi:.2f}]':>18} {r['spearman']:>10.3f} {r['n']:>4}")
    long_epochs = head["long_epochs"]
    marks = sorted({k for k in (1, head["proxy_epochs"], 3 * head["proxy_epochs"], long_epochs // 2) if
                    1 <= k < long_epochs})
    out(f"the long training's own epoch k against its end (a diagnostic: its cosine spans all {long_epochs} epochs)")
    for k, r in long_epoch_fidelity(rows, marks).items():
        out(f"{'epoch ' + str(k):<10} {r['kendall']:>9.3f} {r['spearman']:>10.3f} {r['n']:>4}")
    budgets = sorted({int(k) for r in rows for k in (r.get("budgets") or {})})
    if budgets:
        out("each longer proxy's own epoch k against the long end (what MO-ASHA's rung at epoch k reads in a search "
            "with that proxy)")
    for budget in budgets:
        for k, r in long_epoch_fidelity(rows, [k for k in RUNGS if k < budget], budget=budget).items():
            out(f"{f'{k}/{budget}':<10} {r['kendall']:>9.3f} {r['spearman']:>10.3f} {r['n']:>4}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--archs", type=int, default=12, help="random architectures of the space (default 12)")
    ap.add_argument("--sample-seed", type=int, default=0, help="seed of the random sampler drawing them")
    ap.add_argument("--long-factor", type=int, default=10, help="long training = this × proxy.epochs (default 10)")
    ap.add_argument("--proxy-epochs", type=int, nargs="+", default=[], metavar="K",
                    help="also the search's evaluation at these proxy budgets (signal final@K)")
    ap.add_argument("--jobs", type=int, default=1, help="processes, one thread each (default 1)")
    ap.add_argument("--data-dir", default=None, help="where the config's data set lives (default: the config's)")
    ap.add_argument("--out", type=Path, default=TABLE)
    ap.add_argument("--json", type=Path, default=None, help="also write the τ/ρ table here")
    args = ap.parse_args(argv)
    for flag, v, low in (("--archs", args.archs, 3), ("--long-factor", args.long_factor, 2), ("--jobs", args.jobs, 1)):
        if v < low:
            ap.error(f"{flag}: must be >= {low}, got {v}")
    if any(k < 1 for k in args.proxy_epochs):
        ap.error(f"--proxy-epochs: every budget must be >= 1, got {args.proxy_epochs}")
    args.config, args.out = args.config.resolve(), args.out.resolve()
    cfg = bench_config(args.config, data_dir=args.data_dir)
    head = header(args, cfg)
    rows = load_existing(args.out, head)
    done = {r["arch_id"] for r in rows}
    sampled = sample_archs(cfg, args.archs, seed=args.sample_seed)
    todo = [a for a in sampled if a.arch_id not in done]
    print(f"{len(rows)} row(s) in {args.out.name}; {len(todo)} to train ({cfg.proxy.epochs} + "
          f"{args.long_factor * cfg.proxy.epochs} epochs each, {args.jobs} job(s))", flush=True)
    by_id = {r["arch_id"]: r for r in rows}
    extra = [(k, a.arch_id) for k in args.proxy_epochs for a in sampled
             if str(k) not in (by_id.get(a.arch_id, {}).get("budgets") or {})]
    if extra:
        print(f"{len(extra)} training(s) at other proxy budgets ({', '.join(map(str, args.proxy_epochs))} epochs)",
              flush=True)
    early: dict[str, dict[str, Any]] = {}  # budgets of rows not written yet (the results come in any order)
    tasks = [(measure, (a.to_yaml(), str(args.config), args.long_factor, args.data_dir)) for a in todo]
    arch_yaml = {a.arch_id: a.to_yaml() for a in todo} | {r["arch_id"]: r["arch_yaml"] for r in rows}
    tasks += [(measure_budget, (arch_yaml[i], str(args.config), k, args.data_dir)) for k, i in extra]
    if args.jobs > 1 and len(tasks) > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(min(args.jobs, len(tasks)))
        results = pool.imap_unordered(_call, tasks)
    else:
        pool, results = None, map(_call, tasks)
    show = lambda c: "diverged" if not c else f"{c[-1]:.3f}"  # noqa: E731
    try:
        for result in results:
            if "epochs" in result:  # another proxy budget of a row
                budget = {k: result[k] for k in ("curve", "seconds", "error")}
                if result["arch_id"] in by_id:
                    by_id[result["arch_id"]].setdefault("budgets", {})[str(result["epochs"])] = budget
                    write(args.out, head, rows)
                else:
                    early.setdefault(result["arch_id"], {})[str(result["epochs"])] = budget
                print(f"      {result['arch_id']}  proxy {result['epochs']} epochs {show(result['curve'])} "
                      f"({result['seconds']:.0f}s)", flush=True)
                continue
            if result["arch_id"] in early:
                result["budgets"] = early.pop(result["arch_id"])
            rows.append(result)
            by_id[result["arch_id"]] = result
            write(args.out, head, rows)
            print(f"[{len(rows):>3}/{args.archs}] {result['arch_id']}  proxy {show(result['proxy_curve'])} "
                  f"({result['proxy_seconds']:.0f}s)  long {show(result['long_curve'])} "
                  f"({result['long_seconds']:.0f}s)", flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    res = print_table(rows, head)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


def _call(task: tuple) -> dict[str, Any]:
    fn, args = task
    return fn(*args)


if __name__ == "__main__":
    raise SystemExit(main())
