"""The ``nas`` command: search, export, show, retrain.

A bad config, YAML or option prints one line ``nas: error: FIELD: PROBLEM`` and exits 2, before
Ray starts or any trial runs.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2


class UsageError(ValueError):
    """A bad command-line value: one line, exit 2."""


def _quiet() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def cmd_search(args: argparse.Namespace) -> int:
    from .config import load_config
    from .run import search_from_config

    cfg = load_config(args.config)
    if args.name:
        cfg = cfg.model_copy(update={"name": args.name})
    run_dir = Path(args.results) / cfg.name
    print(f"nas search: run '{cfg.name}' → {run_dir}/  ({cfg.search.n_trials} trials, sampler "
          f"{cfg.search.sampler}, objectives {', '.join(cfg.objectives)})", flush=True)
    search_from_config(cfg, run_dir=run_dir, resume=args.resume, out=lambda s: print(s, flush=True))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    export_run(Path(args.run_dir))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from evaluators import count_complexity, layer_table
    from space import build_model, load_arch

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
        shape = "×".join(str(s) for s in r.get("output_shape", r.get("shape", ())))
        print(f"{str(r['name']):<28}{shape:>20}{r['params']:>14,}{r['macs'] / 1e6:>12.2f}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from space import load_arch

    from .retrain import RetrainConfig, retrain

    arch = load_arch(args.arch)
    cfg = RetrainConfig(data=args.data, data_dir=args.data_dir, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, weight_decay=args.weight_decay, seed=args.seed, device=args.device,
                        threads=args.threads)
    metrics = retrain(arch, cfg, out_dir=Path(args.out), resume=args.resume, out=lambda s: print(s, flush=True))
    print(f"test accuracy {metrics['test_acc']:.4f} after {metrics['epochs']} epochs → {args.out}/metrics.json")
    return 0


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
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
    e.set_defaults(func=cmd_export)

    sh = sub.add_parser("show", help="params, FLOPs, MACs and layers of an architecture YAML or preset")
    sh.add_argument("arch", help="a YAML path or a preset name (wrn-28-10, ...)")
    sh.add_argument("--input-size", type=_positive_int, default=None)
    sh.add_argument("--num-classes", type=_positive_int, default=10)
    sh.add_argument("--in-chans", type=_positive_int, default=3)
    sh.add_argument("--json", action="store_true", help="machine-readable output")
    sh.add_argument("--yaml", action="store_true", help="print the canonical spec YAML")
    sh.set_defaults(func=cmd_show)

    r = sub.add_parser("retrain", help="train an architecture from scratch and report test accuracy")
    r.add_argument("arch", help="a YAML path or a preset name")
    r.add_argument("--data", default="digits", choices=["digits", "cifar10", "cifar100", "imagefolder"])
    r.add_argument("--data-dir", default=None)
    r.add_argument("--epochs", type=_positive_int, default=10)
    r.add_argument("--batch-size", type=_positive_int, default=128)
    r.add_argument("--lr", type=_positive_float, default=0.1)
    r.add_argument("--weight-decay", type=_positive_float, default=5e-4)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=_positive_int, default=None)
    r.add_argument("--out", required=True, help="output folder (checkpoint, weights, metrics.json)")
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    r.set_defaults(func=cmd_retrain)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from space import SpecError

    from .config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet()
    try:
        return args.func(args)
    except (ConfigError, SpecError, UsageError) as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        if os.environ.get("NAS_DEBUG"):
            raise
        print(f"nas: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nas: interrupted; resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
