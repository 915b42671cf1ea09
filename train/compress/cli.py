"""``nas prune``: options generated from :class:`CompressConfig`, and the run (``nas`` mounts both)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ..cli_options import add_config_options, config_from_args
from .config import CompressConfig

DESCRIPTION = ("Taylor channel pruning (Molchanov et al. 2019) or LRPET low-rank training (Guo et al. 2023); "
               "writes OUT/arch.yaml, OUT/model.pt, OUT/metrics.json.")
FLAGS = {"batch_size": ("-b", "--batch-size")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The positional ARCH and CKPT, ``--out`` and one option per :class:`CompressConfig` field."""
    parser.add_argument("arch", help="the network's architecture: a YAML path or a preset name")
    parser.add_argument("ckpt", help="its weights: model.pt (a state dict) or a retrain checkpoint.pt")
    parser.add_argument("--out", required=True, help="output folder")
    add_config_options(parser, CompressConfig, flags=FLAGS)


def run(args: argparse.Namespace, *, out: Callable[[str], None] = print) -> int:
    """Compress ``args.arch`` with the weights ``args.ckpt`` into ``args.out``."""
    from space import load_arch

    from .pipeline import compress, load_weights

    cfg = config_from_args(args, CompressConfig)
    arch = load_arch(args.arch)
    state = load_weights(args.ckpt)
    m = compress(arch, state, cfg, out_dir=Path(args.out), out=out)
    out(f"{cfg.method}: macs {m['before']['macs']:,} → {m['after']['macs']:,} ({m['ratio']['macs']:.3f}), "
        f"test accuracy {m['before']['test_acc']:.4f} → {m['after']['test_acc']:.4f} → {args.out}/metrics.json")
    return 0
