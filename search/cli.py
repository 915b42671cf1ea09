"""The ``nas`` command: search, export, show, onnx, retrain, prune, latency, latency-table, report, compare,
bench-space.

A bad config, YAML, option or input file prints one line ``nas: error: FIELD: PROBLEM`` and exits 2, before
Ray starts or any trial runs. A failure at run time prints one line ``nas: error: TYPE: MESSAGE (traceback
in RUN/error.log)`` and exits 1; the traceback goes to the run folder's ``error.log`` (``./nas-error.log``
when there is none). ``NAS_DEBUG=1`` lets the exception through instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import Sequence

from train.cli_options import non_negative_int, positive_int
from train.engine import failed_at_run_time

EXIT_FAILURE = 1
EXIT_USAGE = 2
ERROR_LOG = "error.log"


class UsageError(ValueError):
    """A bad command-line value: one line, exit 2."""


def _quiet() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def cmd_search(args: argparse.Namespace) -> int:
    from .config import check_run_name, load_config
    from .run import search_from_config

    if args.name is not None:
        try:
            check_run_name(args.name)
        except ValueError as exc:
            raise UsageError(f"--name: {exc}") from None
    cfg = load_config(args.config)
    if args.name is not None:
        cfg = cfg.model_copy(update={"name": args.name})  # checked above: the one field model_copy skips
    run_dir = Path(args.results) / cfg.name
    args.log_dir = run_dir  # a run-time failure leaves its traceback here, once the folder exists
    if threading.current_thread() is threading.main_thread():
        from .interrupt import install

        install(lambda: run_dir / ERROR_LOG)  # Ctrl-C: exit 130, within a bounded time
    print(f"nas search: run '{cfg.name}' → {run_dir}/  ({cfg.search.n_trials} trials, sampler "
          f"{cfg.search.sampler}, objectives {', '.join(cfg.objectives)})", flush=True)
    try:
        search_from_config(cfg, run_dir=run_dir, resume=args.resume, out=lambda s: print(s, flush=True))
    except KeyboardInterrupt:
        again = ["nas", "search", args.config, *(["--name", args.name] if args.name else []),
                 "--results", args.results, "--resume"]
        print(f"nas: interrupted; resume with: {shlex.join(again)}", file=sys.stderr, flush=True)
        return 130
    return 0


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def cmd_export(args: argparse.Namespace) -> int:
    from .results.export import export_run

    export_run(Path(args.run_dir), onnx=args.onnx, remeasure=args.remeasure, remeasure_seconds=args.remeasure_seconds)
    return 0


def cmd_onnx(args: argparse.Namespace) -> int:
    """Export an architecture to ONNX (space/onnx_export.py) and check it with ONNX Runtime against PyTorch."""
    import torch

    from evaluators.onnx_runtime import check_against_torch
    from space import build_model, load_arch
    from space.onnx_export import OPSET, export_arch, load_weights

    arch = load_arch(args.arch)
    if args.input_size:
        arch = arch.replace(input_size=args.input_size)
    data = export_arch(arch, num_classes=args.num_classes, in_chans=args.in_chans, weights=args.weights, out=args.out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the export's seeded weights, when no --weights
        model = build_model(arch, num_classes=args.num_classes, in_chans=args.in_chans)
    if args.weights:
        load_weights(model, args.weights)
    err = check_against_torch(model, data, input_shape=(2, args.in_chans, arch.input_size, arch.input_size))
    if not err <= 1e-4:
        raise ValueError(f"onnx: ONNX Runtime differs from PyTorch by {err:.3g} on arch {arch.arch_id} (> 1e-4)")
    print(f"{args.out}: arch {arch.arch_id}, opset {OPSET}, input (batch, {args.in_chans}, {arch.input_size}, "
          f"{arch.input_size}), {len(data) / 1e6:.2f} MB; ONNX Runtime matches PyTorch (max |diff| {err:.2g})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from space import build_model, load_arch
    from space.complexity import count_complexity, layer_table

    arch = load_arch(args.arch)
    if args.input_size:
        arch = arch.replace(input_size=args.input_size)
    if args.yaml:
        print(arch.to_yaml(), end="")
        return 0
    model = build_model(arch, num_classes=args.num_classes, in_chans=args.in_chans)
    c = count_complexity(model, input_size=arch.input_size, in_chans=args.in_chans)
    info = {"arch_id": arch.arch_id, "params": c["params"], "flops": c["flops"], "macs": c["macs"],
            "input_size": arch.input_size, "num_classes": args.num_classes}
    if args.json:
        info["layers"] = layer_table(model, input_size=arch.input_size, in_chans=args.in_chans)
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"arch_id   {arch.arch_id}\ninput     {args.in_chans}×{arch.input_size}×{arch.input_size}, "
          f"{args.num_classes} classes\nparams    {c['params']:,}\n"
          f"flops     {c['flops'] / 1e6:,.2f} M (fvcore total)\nmacs      {c['macs'] / 1e6:,.2f} M (conv+linear)")
    rows = layer_table(model, input_size=arch.input_size, in_chans=args.in_chans)
    print(f"\n{'layer':<28}{'output':>20}{'params':>14}{'macs (M)':>12}")
    for r in rows:
        shape = "×".join(str(s) for s in r["out_shape"])
        print(f"{str(r['name']):<28}{shape:>20}{r['params']:>14,}{r['macs'] / 1e6:>12.2f}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    """Options left unset take RetrainConfig's defaults; ``--nproc N`` re-runs this under torchrun."""
    from train.retrain.cli import run

    return run(args, out=lambda s: print(s, flush=True))


def cmd_prune(args: argparse.Namespace) -> int:
    """Compress a retrained network (Taylor pruning or LRPET); see :mod:`train.compress.pipeline`."""
    from train.compress.cli import run

    return run(args, out=lambda s: print(s, flush=True))


def cmd_latency_table(args: argparse.Namespace) -> int:
    """Build a per-unit latency table for a config's space on this machine, or validate one."""
    from .config import load_config
    from .latency_space import latency_table_command

    if args.validate and not args.table:
        raise UsageError("--table: required with --validate (the table to check)")
    if args.table:
        from evaluators.latency_table import LatencyTable

        try:  # a missing or malformed table is bad input (exit 2), checked before anything is measured
            LatencyTable.load(args.table, where="--table")
        except (ValueError, OSError) as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
    cfg = load_config(args.space)
    threads = None if args.threads == 0 else (args.threads or cfg.latency.threads)
    return latency_table_command(cfg, out_path=args.out, table_path=args.table, validate_only=args.validate,
                                 device=args.device, batch=args.batch, input_size=args.input_size, threads=threads,
                                 warmup=args.warmup, repeats=args.repeats, rounds=args.rounds, n=args.n,
                                 calibrate_n=args.calibrate, truth_repeats=args.truth_repeats,
                                 protocol=args.protocol, max_seconds=args.max_seconds, seed=args.seed,
                                 out=lambda s: print(s, flush=True))


def cmd_latency(args: argparse.Namespace) -> int:
    """One architecture's latency, measured as a search measures it (search/latency_command.py)."""
    from space import load_arch

    from .latency_command import latency_command

    if args.threads < 0:
        raise UsageError(f"--threads: must be >= 0 (0: leave torch's count), got {args.threads}")
    arch = load_arch(args.arch)
    if args.input_size:
        arch = arch.replace(input_size=args.input_size)
    try:
        return latency_command(arch, as_json=args.json, device=args.device, batch=args.batch,
                               threads=None if args.threads == 0 else args.threads, protocol=args.protocol,
                               num_classes=args.num_classes, in_chans=args.in_chans, recalibrate=args.recalibrate,
                               max_seconds=args.max_seconds, out=lambda s: print(s, flush=True))
    except ValueError as exc:
        if str(exc).startswith(("--", "latency.")):
            raise UsageError(str(exc).splitlines()[0]) from None
        raise


def cmd_report(args: argparse.Namespace) -> int:
    """HTML report (plotly.js inline) and PNGs of a run, from its storage (search/report.py)."""
    from .results.report import build_report

    build_report(Path(args.run_dir), out_dir=Path(args.out) if args.out else None, out=lambda s: print(s, flush=True))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Presets trained with the run's proxy budget, data and seed; which the front dominates (search/compare.py)."""
    from .results.compare import compare_presets

    compare_presets(Path(args.run_dir), args.presets.split(","), data_dir=args.data_dir, threads=args.threads,
                    force=args.force, remeasure=args.remeasure, jobs=args.jobs, out=lambda s: print(s, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from train.compress import cli as prune_cli
    from train.retrain import cli as retrain_cli

    p = argparse.ArgumentParser(prog="nas", description="Hardware-aware neural architecture search for CNNs")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="run (or resume) a search from a YAML config")
    s.add_argument("config")
    s.add_argument("--name", help="run name (default: the config's name)")
    s.add_argument("--results", default="results", help="folder holding run folders (default: results)")
    s.add_argument("--resume", action="store_true", help="continue an existing run folder")
    s.set_defaults(func=cmd_search)

    e = sub.add_parser("export", help="re-derive trials.csv, pareto/, best.yaml from a run's storage")
    e.add_argument("run_dir")
    e.add_argument("--onnx", action="store_true",
                   help="also write pareto/<arch_id>.onnx (untrained weights: for shapes and latency)")
    e.add_argument("--no-remeasure", dest="remeasure", action="store_false",
                   help="do not time the front again (front_latency.csv; docs/latency.md)")
    e.add_argument("--remeasure-seconds", type=positive_float, default=None,
                   help="cap of that session (default: latency.max_seconds × the number of architectures)")
    e.set_defaults(func=cmd_export)

    ox = sub.add_parser("onnx", help="export an architecture to ONNX (opset 18, dynamic batch), checked by "
                                     "ONNX Runtime")
    ox.add_argument("arch", help="a YAML path or a preset name")
    ox.add_argument("--weights", default=None, help="a model.pt from `nas retrain` (default: seeded initial weights)")
    ox.add_argument("--out", required=True, help="the .onnx file to write")
    ox.add_argument("--input-size", type=positive_int, default=None, help="default: the architecture's")
    ox.add_argument("--num-classes", type=positive_int, default=10)
    ox.add_argument("--in-chans", type=positive_int, default=3)
    ox.set_defaults(func=cmd_onnx, bad_input=(ValueError,))

    sh = sub.add_parser("show", help="params, FLOPs, MACs and layers of an architecture YAML or preset")
    sh.add_argument("arch", help="a YAML path or a preset name (wrn-28-10, ...)")
    sh.add_argument("--input-size", type=positive_int, default=None)
    sh.add_argument("--num-classes", type=positive_int, default=10)
    sh.add_argument("--in-chans", type=positive_int, default=3)
    sh.add_argument("--json", action="store_true", help="machine-readable output")
    sh.add_argument("--yaml", action="store_true", help="print the canonical spec YAML")
    sh.set_defaults(func=cmd_show)

    r = sub.add_parser("retrain", help="train an architecture from scratch and report test accuracy",
                       description=retrain_cli.DESCRIPTION + " torchrun ... -m search.cli retrain ... works too.")
    retrain_cli.add_arguments(r)
    r.set_defaults(func=cmd_retrain, bad_input=(ValueError,),
                   interrupted="; the same command with --resume continues from the last epoch's checkpoint")

    pr = sub.add_parser("prune", help="compress a retrained network to a MACs/params target and fine-tune it",
                        description=prune_cli.DESCRIPTION)
    prune_cli.add_arguments(pr)
    pr.set_defaults(func=cmd_prune, bad_input=(ValueError,))

    lt = sub.add_parser("latency-table", help="measure a per-unit latency table for a config's space, or validate one",
                        description="Times every unit (stem, block, head) the config's search space can build, "
                                    "alone on --device, into a YAML lookup table for `latency: {mode: predict, "
                                    "table: PATH}`; with --validate, measures --n random architectures end to end "
                                    "and reports how well the table predicts them.")
    lt.add_argument("--space", required=True, help="a search config YAML (its space, data set and latency settings)")
    lt.add_argument("--out", default="latency_table.yaml", help="where to write the table (default latency_table.yaml)")
    lt.add_argument("--device", default=None, help="cpu, cuda, cuda:N, ort-cpu or ort-cuda (ONNX Runtime; each unit "
                                                    "exported alone) (default: the config's latency.device)")
    lt.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    lt.add_argument("--input-size", type=positive_int, default=None, help="default: the data set's")
    lt.add_argument("--threads", type=non_negative_int, default=None,
                    help="intra-op threads (default: latency.threads; 0: leave)")
    lt.add_argument("--protocol", choices=["interleaved", "plain"], default="interleaved",
                    help="interleaved (default): every unit timed in alternating rounds with the reference wrn-16-1 "
                         "and stored as ratio × the reference's calibrated latency, so the machine's drift cancels; "
                         "plain: absolute medians (--warmup, --repeats, --rounds). --validate uses the table's own")
    lt.add_argument("--max-seconds", type=positive_float, default=2.0,
                    help="interleaved: the most seconds of alternating rounds per unit or network, when its ratio's "
                         "95%% interval is not yet within 2%% (default 2)")
    lt.add_argument("--warmup", type=non_negative_int, default=10,
                    help="untimed passes per unit (plain) or per reference calibration round (default 10)")
    lt.add_argument("--repeats", type=positive_int, default=50,
                    help="timed passes per unit (plain) or per reference calibration round (default 50)")
    lt.add_argument("--rounds", type=positive_int, default=3,
                    help="plain: rounds of --repeats; the median of the round medians counts (default 3)")
    lt.add_argument("--calibrate", type=non_negative_int, default=20,
                    help="random architectures measured end to end (--truth-repeats times each, the median counts) "
                         "to fit scale and overhead (default 20; 0: off)")
    lt.add_argument("--seed", type=int, default=0, help="seed of the random architectures (default 0)")
    lt.add_argument("--validate", action="store_true", help="validate --table instead of building one")
    lt.add_argument("--table", default=None, help="the table to validate")
    lt.add_argument("--n", type=positive_int, default=20, help="architectures to validate on (default 20)")
    lt.add_argument("--truth-repeats", type=positive_int, default=3,
                    help="end-to-end measurements per architecture, minutes apart: --validate's ground truth and the "
                         "calibration's are their median, --validate's noise floor their spread (default 3)")
    lt.set_defaults(func=cmd_latency_table)

    la = sub.add_parser("latency", help="measure one architecture's latency as a search does (interleaved with a "
                                        "reference network)")
    la.add_argument("arch", help="a YAML path or a preset name (wrn-16-1, ...)")
    la.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, ort-cpu or ort-cuda (default cpu)")
    la.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    la.add_argument("--input-size", type=positive_int, default=None, help="default: the architecture's")
    la.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1; 0: leave torch's)")
    la.add_argument("--protocol", default="interleaved",
                    help="interleaved (ratio to wrn-16-1 × its stored latency; default) or plain")
    la.add_argument("--num-classes", type=positive_int, default=10)
    la.add_argument("--in-chans", type=positive_int, default=3)
    la.add_argument("--max-seconds", type=float, default=None,
                    help="interleaved: time cap of the rounds (default: latency.max_seconds, 10)")
    la.add_argument("--recalibrate", action="store_true",
                    help="measure the reference's latency afresh and store it (default: reuse the stored one)")
    la.add_argument("--json", action="store_true", help="one JSON object: latency_ms, ci_ms, repeats, protocol, "
                                                        "reference_ms, ratio, ...")
    la.set_defaults(func=cmd_latency)

    rp = sub.add_parser("report", help="self-contained HTML report (+ PNGs) of a run, from its storage")
    rp.add_argument("run_dir")
    rp.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
    rp.set_defaults(func=cmd_report)

    cp = sub.add_parser("compare", help="train presets with the run's proxy budget; which the front dominates")
    cp.add_argument("run_dir")
    cp.add_argument("--presets", default="wrn-16-1,wrn-16-2,wrn-16-4",
                    help="comma-separated preset names or YAML paths (default wrn-16-1,wrn-16-2,wrn-16-4)")
    cp.add_argument("--data-dir", default=None, help="where the run's data set lives now (default: the config's)")
    cp.add_argument("--threads", type=positive_int, default=None, help="default: the run's ray.cpus_per_trial")
    cp.add_argument("--force", action="store_true", help="re-measure presets already in compare.json")
    cp.add_argument("--jobs", type=positive_int, default=1,
                    help="presets trained at once, each in its own process with --threads threads (default 1)")
    cp.add_argument("--no-remeasure", dest="remeasure", action="store_false",
                    help="do not time the front and the presets again together afterwards (front_latency.csv)")
    cp.set_defaults(func=cmd_compare, bad_input=(ValueError,),
                    interrupted="; the presets finished so far are in compare.json: the same command trains the rest")

    bs = sub.add_parser("bench-space", help="repeated searches on a tabular benchmark: best accuracy, hypervolume, "
                                            "orchestration overhead")
    bs.add_argument("space", choices=["nb201"])
    bs.add_argument("--sampler", default="tpe", help="a registered sampler (default tpe)")
    bs.add_argument("--trials", type=positive_int, default=100, help="trials per search (default 100)")
    bs.add_argument("--seeds", type=positive_int, default=10, help="searches, seeds 0..N-1 (default 10)")
    bs.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py/ (default: NAS_DATA_DIR)")
    bs.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    bs.set_defaults(func=cmd_bench_space)
    return p


def cmd_bench_space(args: argparse.Namespace) -> int:
    from .bench_space import bench_space

    out = (lambda s: None) if args.json else (lambda s: print(s, flush=True))
    res = bench_space(args.space, sampler=args.sampler, trials=args.trials, seeds=args.seeds,
                      data_dir=args.data_dir, out=out)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.space}, sampler {args.sampler}, {args.seeds} seed(s) (mean ± sd)")
    print(f"{'trials':>7}  {'best val_acc':>17}  {'hypervolume fraction':>21}")
    for k in res["best_acc"]:
        b, h = res["best_acc"][k], res["hv_fraction"][k]
        print(f"{k:>7}  {b['mean']:.4f} ± {b['sd']:.4f}  {h['mean']:>12.4f} ± {h['sd']:.4f}")
    o = next(iter(res["overhead_s_per_trial"].values()))
    print(f"orchestration overhead: {o['mean']:.3f} ± {o['sd']:.3f} s/trial")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``nas`` command: 0 done, 2 bad input (one line), 1 a failure at run time (one line + error.log).

    Bad input is a :class:`ConfigError`, :class:`SpecError` or :class:`UsageError` (file-reading problems are
    turned into one where the file is read). ``retrain``, ``prune``, ``onnx`` and ``compare`` check their options by
    raising ``ValueError`` (``bad_input`` on their parsers), so for them a ``ValueError`` is bad input, except the
    ones training or export raise at run time (:func:`train.failed_at_run_time`)."""
    from space import SpecError

    from .errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet()
    try:
        return args.func(args)
    except (ConfigError, SpecError, UsageError, *getattr(args, "bad_input", ())) as exc:
        if not failed_at_run_time(exc):
            print(f"nas: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return _failure(exc, args, argv)
    except KeyboardInterrupt:  # `nas search` says how to resume itself; the others what is kept
        print(f"nas: interrupted{getattr(args, 'interrupted', '')}", file=sys.stderr)
        return 130
    except Exception as exc:
        return _failure(exc, args, argv)


def _failure(exc: BaseException, args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Exit 1 with one line; the traceback goes to error.log (``NAS_DEBUG=1``: raise instead)."""
    if os.environ.get("NAS_DEBUG"):
        raise exc
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")[:300]
    print(f"nas: error: {type(exc).__name__}{': ' + text if text else ''} ({_save_traceback(args, argv)})",
          file=sys.stderr)
    return EXIT_FAILURE


def _save_traceback(args: argparse.Namespace, argv: Sequence[str] | None) -> str:
    """Write the current exception's traceback to RUN/error.log (else ./nas-error.log); say where it went."""
    folder = getattr(args, "log_dir", None) or getattr(args, "run_dir", None)
    targets = ([Path(folder) / ERROR_LOG] if folder is not None and Path(folder).is_dir() else []) + \
        [Path("nas-error.log")]
    stamp = f"nas {' '.join(sys.argv[1:] if argv is None else argv)}\n"
    for path in targets:
        try:
            with open(path, "a") as f:
                f.write(stamp + traceback.format_exc() + "\n")
            return f"traceback in {path}"
        except OSError:
            continue
    return "traceback not saved: no writable folder"


if __name__ == "__main__":
    sys.exit(main())
