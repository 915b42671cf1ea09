"""Which choices of the full space cost training time and which pay in proxy accuracy: per value of each network-
wide choice (norm, activation, unit order) and each per-stage one (block, attention), over the architectures of
``bench/data/zero_cost_full.json`` (random networks of configs/full_space.yaml, each trained 2 epochs at 16×16
pixels on the CIFAR-10 subset by ``bench/zero_cost.py --space full``): how many networks have it, their median
training seconds (one thread) and their mean validation accuracy (a diverged network counts as chance, 0.1).

    .venv/bin/python bench/choice_cost.py [--table bench/data/zero_cost_full.json]

It reads the table only (no training). A per-stage value counts once per network that uses it in any stage.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "bench" / "data" / "zero_cost_full.json"
NETWORK = ("norm", "act", "order")
STAGE = ("block", "attention")


def by_choice(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """``{(field, value): {"n", "median_train_s", "mean_val_acc"}}`` over ``rows`` (each with ``arch_yaml``,
    ``train_seconds`` and ``val_acc``)."""
    import yaml

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        stages = yaml.safe_load(row["arch_yaml"])["stages"]
        keys = {(f, str(stages[0][f])) for f in NETWORK} | {(f, str(s[f])) for s in stages for f in STAGE}
        for key in keys:
            groups.setdefault(key, []).append(row)
    return {key: {"n": len(g), "median_train_s": statistics.median(r["train_seconds"] for r in g),
                  "mean_val_acc": statistics.fmean(0.1 if r["val_acc"] is None else r["val_acc"] for r in g)}
            for key, g in sorted(groups.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    args = ap.parse_args(argv)
    doc = json.loads(args.table.read_text())
    rows = doc["rows"]
    print(f"{len(rows)} networks, proxy {doc['budget']}; per choice: networks, median training s, mean val_acc")
    print(f"{'choice':<26}{'n':>4}{'train s':>10}{'val_acc':>10}")
    for (field, value), s in by_choice(rows).items():
        print(f"{field + '=' + value:<26}{s['n']:>4}{s['median_train_s']:>10.0f}{s['mean_val_acc']:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
