"""A learning-curve table: architectures of configs/quickstart.yaml's space, each trained to a fixed budget, with
the validation accuracy after every epoch — so early stopping can be replayed without training (NAS-Bench-201's
table has no curves).

    .venv/bin/python bench/curve_table.py                        # resumes bench/data/quickstart_curves.json
    .venv/bin/python bench/curve_table.py --epochs 9 --archs 48 --out /tmp/curves.json

Every architecture of the config's space is enumerated (bench/sample_efficiency.py ``enumerate_space``) and put in
a seeded random order (``--order-seed``); the first ``--archs`` of that order are trained, so a table cut short is
still a uniform sample of the space. Each one runs through the search's own ``ArchEvaluation`` (digits, the
config's proxy batch size, lr, seed and recipe, ``proxy.epochs = --epochs``, so the cosine schedule spans the
whole budget as in a search with that budget; objectives ``val_acc, macs``, so no latency is measured) with a
report callback recording every epoch's validation accuracy. Single-threaded and seeded: on the CPU each curve is
a pure function of ``(arch, epochs, seed)``.

Resumable: the file is rewritten (atomically) after every architecture and a rerun skips the arch_ids already in
it; a rerun with other settings than the file's stops with a one-line error.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TABLE = ROOT / "bench" / "data" / "quickstart_curves.json"
OBJECTIVES = ["val_acc", "macs"]


def table_config(config: Path, *, epochs: int) -> Any:
    """``config`` with ``proxy.epochs = epochs`` and objectives val_acc, macs (nothing else changed)."""
    from search import load_config, parse_config

    doc = load_config(config).model_dump(mode="json")
    doc["proxy"]["epochs"] = epochs
    doc["objectives"] = list(OBJECTIVES)
    doc["scheduler"] = {"name": "none"}
    doc["select"] = {}
    return parse_config(doc)


def ordered_archs(cfg: Any, *, order_seed: int) -> tuple[int, list[tuple[dict[str, Any], Any]]]:
    """The input size and every ``(params, arch)`` of the config's space in a seeded random order."""
    from search import SearchSpace
    from search.evaluation import load_data

    sys.path.insert(0, str(ROOT / "bench"))
    from sample_efficiency import enumerate_space

    data = load_data(cfg)
    archs = enumerate_space(SearchSpace(cfg.space, input_size=data.input_size))
    random.Random(order_seed).shuffle(archs)
    return data.input_size, archs


def rebuild_command(args: argparse.Namespace) -> str:
    """The command line that rebuilds (or resumes) this table."""
    config = os.path.relpath(args.config, ROOT)
    out = os.path.relpath(args.out, ROOT)
    return (f".venv/bin/python bench/curve_table.py --config {config} --epochs {args.epochs} --archs {args.archs} "
            f"--order-seed {args.order_seed} --threads {args.threads} --out {out}")


def header(args: argparse.Namespace, cfg: Any, input_size: int, n_space: int) -> dict[str, Any]:
    return {
        "about": "per-epoch validation accuracy of architectures of configs/quickstart.yaml's space, each trained "
                 f"{args.epochs} epochs by search.evaluation.ArchEvaluation (cosine schedule over the {args.epochs} "
                 "epochs, single-threaded, seeded); rows in a seeded random order of the space; "
                 f"rebuild or resume: {rebuild_command(args)}",
        "command": rebuild_command(args), "max_t": args.epochs, "seed": cfg.search.seed, "threads": args.threads,
        "order_seed": args.order_seed, "space_size": n_space, "input_size": input_size,
        "objectives": list(OBJECTIVES), "config": cfg.model_dump(mode="json")}


def load_existing(out: Path, head: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows already in ``out`` (none if absent); exits on a file built with other settings."""
    if not out.exists():
        return []
    doc = json.loads(out.read_text())
    for key in ("max_t", "seed", "threads", "order_seed", "config"):
        if doc.get(key) != head[key]:
            raise SystemExit(f"{key}: {out} was built with {doc.get(key)!r}, this run asks {head[key]!r}; "
                             "use another --out or the same settings")
    return doc["rows"]


def write(out: Path, head: dict[str, Any], rows: list[dict[str, Any]], seconds: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({**head, "seconds": round(seconds, 1), "rows": rows}, indent=None,
                              separators=(",", ":")) + "\n")
    os.replace(tmp, out)


def train_one(evaluate: Any, arch: Any) -> dict[str, Any]:
    """Train ``arch``; its complexity, per-epoch val_acc and the seconds it took."""
    curve: list[float] = []

    def report(m: dict[str, Any]) -> None:
        if int(m["epoch"]) != len(curve) + 1:
            raise RuntimeError(f"epoch: expected {len(curve) + 1}, got {m['epoch']}")
        curve.append(float(m["val_acc"]))

    t0 = time.perf_counter()
    final = evaluate(arch, report)
    return {"macs": final["macs"], "flops": final["flops"], "params": final["params"], "val_acc": curve,
            "train_seconds": round(final["train_seconds"], 2), "seconds": round(time.perf_counter() - t0, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    ap.add_argument("--epochs", type=int, default=18, help="the budget every architecture trains (max_t)")
    ap.add_argument("--archs", type=int, default=96, help="how many architectures (the first of the seeded order)")
    ap.add_argument("--order-seed", type=int, default=0, help="seed of the architectures' order")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=TABLE)
    args = ap.parse_args(argv)
    args.config, args.out = args.config.resolve(), args.out.resolve()

    import logging
    import warnings

    from search.evaluation import ArchEvaluation

    warnings.filterwarnings("ignore")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    cfg = table_config(args.config, epochs=args.epochs)
    input_size, archs = ordered_archs(cfg, order_seed=args.order_seed)
    head = header(args, cfg, input_size, len(archs))
    rows = load_existing(args.out, head)
    done = {r["arch_id"] for r in rows}
    evaluate = ArchEvaluation(cfg, threads=args.threads)
    spent = sum(r["seconds"] for r in rows)
    todo = [(p, a) for p, a in archs[:args.archs] if a.arch_id not in done]
    print(f"{len(rows)} rows in {args.out.name}; {len(todo)} to train × {args.epochs} epochs", flush=True)
    for params, arch in todo:
        row = {"arch_id": arch.arch_id, "choice": params, **train_one(evaluate, arch)}
        rows.append(row)
        spent += row["seconds"]
        write(args.out, head, rows, spent)
        print(f"[{len(rows):>3}/{min(args.archs, len(archs))}] {arch.arch_id}  val_acc {row['val_acc'][0]:.3f} → "
              f"{row['val_acc'][-1]:.3f}  macs {row['macs'] / 1e6:.2f}M  {row['seconds']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
