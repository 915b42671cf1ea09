"""``nas retrain`` and ``python -m train.retrain``: options generated from :class:`RetrainConfig`, and the run.

``nas`` mounts :func:`add_arguments` and :func:`run` as its ``retrain`` command; :func:`main` is the same
parser on its own, so ``torchrun --nproc_per_node N -m train.retrain ARCH ...`` starts N data-parallel
processes directly. Flag names are timm ``train.py``'s where it has one (``-b``, ``--smoothing``,
``--clip-grad``, ``--model-ema``, ``--sched-on-epochs``, ...).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

from ..cli_options import add_config_options, config_from_args, positive_int
from ..engine import failed_at_run_time
from .config import RetrainConfig

EXIT_USAGE = 2
DESCRIPTION = ("Train with timm's parts; unset options take train.retrain.RetrainConfig's defaults. Data parallel: "
               "--nproc N, or torchrun --nproc_per_node N -m train.retrain ARCH ... (batch size is per process, "
               "as in timm).")
SECTIONS = {"data": "data", "epochs": "optimisation (timm names)", "label_smoothing": "regularisation",
            "methods": "training methods",
            "lrpet_target": "low-rank training from scratch (LRPET)", "amp": "speed", "seed": "runtime"}
FLAGS = {"workers": ("-j", "--workers"), "batch_size": ("-b", "--batch-size"),
         "sched_on_updates": ("--sched-on-epochs",), "label_smoothing": ("--smoothing",),
         "grad_clip": ("--clip-grad",), "ema": ("--model-ema",), "ema_decay": ("--model-ema-decay",),
         "ema_warmup": ("--model-ema-warmup",), "compile": ("--compile", "--torchcompile")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The positional ARCH, ``--out``, ``--resume``, ``--nproc`` and one option per :class:`RetrainConfig` field."""
    parser.add_argument("arch", help="a YAML path or a preset name")
    parser.add_argument("--out", required=True, help="output folder (checkpoint, weights, metrics, TensorBoard)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from OUT/checkpoint.pt")
    parser.add_argument("--nproc", type=positive_int, default=1, help="processes to start via torchrun (default 1)")
    add_config_options(parser, RetrainConfig, sections=SECTIONS, flags=FLAGS)


def run(args: argparse.Namespace, *, out: Callable[[str], None] = print) -> int:
    """Retrain ``args.arch`` with the given options; ``--nproc N`` re-runs it in N processes under torchrun."""
    from space import load_arch

    from .distributed import launch
    from .loop import retrain

    arch = load_arch(args.arch)
    cfg = config_from_args(args, RetrainConfig)
    if args.nproc > 1:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("--nproc: already running under torchrun; drop --nproc")
        code = launch(args.nproc, arch_yaml=arch.to_yaml(), config=cfg.to_dict(), out_dir=args.out,
                      resume=args.resume)
        return code if code in (0, EXIT_USAGE) else 1
    metrics = retrain(arch, cfg, out_dir=Path(args.out), resume=args.resume, out=out)
    if os.environ.get("RANK", "0") == "0":
        out(f"test accuracy {metrics['test_acc']:.4f} after {metrics['epochs']} epochs → {args.out}/metrics.json")
    return 0


def build_parser(prog: str = "python -m train.retrain") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run; a bad option or setting prints one line ``PROG: error: field: problem`` (rank 0) and returns 2."""
    from space import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    try:
        return run(args, out=lambda s: print(s, flush=True))
    except (SpecError, ValueError) as exc:
        if failed_at_run_time(exc):
            raise
        if os.environ.get("RANK", "0") == "0":
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
