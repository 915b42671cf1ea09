"""Torch-CPU vs ONNX Runtime-CPU latency of architectures sampled from the full space at CIFAR size.

    .venv/bin/python bench/ort_latency.py [--n 20] [--seed 0] [--rounds 2] [--warmup 5] [--repeats 20] [--threads 1]
                                          [--json out.json]

``--n`` distinct architectures are drawn from configs/full_space.yaml at 3×32×32 with Optuna's seeded
RandomSampler (:func:`search.sample_archs`), built for 10 classes with seeded weights and measured at
batch 1 with :func:`evaluators.measure_latency` on ``cpu`` (torch) and ``ort-cpu`` (the model exported in memory,
ONNX Runtime) — the same protocol, thread count and statistics. The two are interleaved: per architecture,
``--rounds`` rounds of one torch and one ONNX Runtime measurement, the order alternating (A/B, then B/A, and the
first order alternating between architectures), so a drift of the machine's speed hits both alike; each side's
number is the median of its round medians. Printed: one row per architecture (torch ms, ORT ms, torch/ORT), the
median ratio and Spearman's ρ between the two latency rankings (``scipy.stats.spearmanr``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sample_full_space(n: int, *, seed: int) -> list[Any]:
    """``n`` distinct architectures of configs/full_space.yaml at 32×32 (seeded)."""
    import optuna

    from search import SearchSpace, load_config, sample_archs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace(load_config(ROOT / "configs" / "full_space.yaml").space, input_size=32)
    return sample_archs(space, n, seed=seed)


def side_by_side(arch: Any, *, index: int, rounds: int, warmup: int, repeats: int, threads: int) -> dict[str, Any]:
    """Interleaved torch-CPU and ORT-CPU medians (ms) of one architecture at batch 1."""
    import torch

    from evaluators import measure_latency
    from evaluators.latency import measure_ort_latency
    from space import build_model
    from space.onnx_export import arch_choices, export_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(arch, num_classes=10, in_chans=3)
    shape = (1, 3, arch.input_size, arch.input_size)
    data = export_model(model, input_shape=shape, what=f"arch {arch.arch_id} ({arch_choices(arch)})")
    sides: dict[str, Callable[[], float]] = {
        "torch": lambda: measure_latency(model, input_shape=shape, device="cpu", warmup=warmup, repeats=repeats,
                                         threads=threads)["median_ms"],
        "ort": lambda: measure_ort_latency(data, input_shape=shape, device="ort-cpu", warmup=warmup, repeats=repeats,
                                           threads=threads)["median_ms"]}
    medians: dict[str, list[float]] = {"torch": [], "ort": []}
    for r in range(rounds):
        order = ("torch", "ort") if (index + r) % 2 == 0 else ("ort", "torch")
        for side in order:
            medians[side].append(sides[side]())
    torch_ms, ort_ms = statistics.median(medians["torch"]), statistics.median(medians["ort"])
    return {"arch_id": arch.arch_id, "choices": arch_choices(arch), "torch_ms": torch_ms, "ort_ms": ort_ms,
            "ratio": torch_ms / ort_ms, "first": "torch" if index % 2 == 0 else "ort"}


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median torch/ORT ratio and Spearman's ρ between the two rankings."""
    from scipy.stats import spearmanr

    rho = spearmanr([r["torch_ms"] for r in rows], [r["ort_ms"] for r in rows]).statistic if len(rows) >= 2 \
        else float("nan")
    return {"n": len(rows), "median_ratio": statistics.median(r["ratio"] for r in rows), "spearman": float(rho)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="architectures (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved torch/ORT rounds per architecture (default 2)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write rows and summary to this file")
    args = ap.parse_args(argv)

    archs = sample_full_space(args.n, seed=args.seed)
    print(f"{len(archs)} architectures of configs/full_space.yaml at 3×32×32 (seed {args.seed}), batch 1, "
          f"{args.threads} thread(s), {args.rounds} interleaved rounds of warm-up {args.warmup} + median of "
          f"{args.repeats}")
    print(f"{'arch_id':<14}{'torch ms':>10}{'ORT ms':>10}{'torch/ORT':>11}  choices")
    rows = []
    for i, arch in enumerate(archs):
        row = side_by_side(arch, index=i, rounds=args.rounds, warmup=args.warmup, repeats=args.repeats,
                           threads=args.threads)
        rows.append(row)
        print(f"{row['arch_id']:<14}{row['torch_ms']:>10.3f}{row['ort_ms']:>10.3f}{row['ratio']:>11.2f}  "
              f"{row['choices']}", flush=True)
    summary = summarise(rows)
    print(f"median torch/ORT ratio {summary['median_ratio']:.2f}   Spearman ρ (torch vs ORT ranking) "
          f"{summary['spearman']:.3f}   n={summary['n']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
