"""Time per zero-cost proxy on CIFAR-size networks, one CPU thread.

    .venv/bin/python bench/zero_cost_speed.py [--presets wrn-16-1,ghostnet-cifar] [--batch 64] [--repeats 3]
                                              [--threads 1] [--proxies synflow,grasp,...]

Each preset is built for 10 classes and scored on one seeded batch of Gaussian 3×32×32 images (the time does not
depend on the pixel values) with :func:`evaluators.zero_cost.score`; every proxy runs ``--repeats`` times after one
untimed call, and the median is printed twice: wall-clock seconds and the process's CPU seconds. On a machine shared
with other jobs the CPU time leaves out the time spent waiting for them; with one thread it is the work itself.
The last rows time every listed proxy at once: one call each (the sum above) beside
:func:`evaluators.zero_cost.score_all`'s shared passes, measured in turns in the same run, and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _model_and_batch(preset: str, batch: int):
    """The preset built for 10 classes with seed 0, and one seeded Gaussian batch of its input size."""
    import torch

    from space import build_model, get_preset

    arch = get_preset(preset)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_chans=3)
    size = arch.input_size
    return model, (torch.randn(batch, 3, size, size, generator=gen), torch.randint(0, 10, (batch,), generator=gen))


def time_proxies(preset: str, proxies: list[str], *, batch: int, repeats: int) -> list[tuple[str, float, float, float]]:
    """``(proxy, value, median wall s, median CPU s)`` for each proxy on ``preset``."""

    from evaluators.zero_cost import score

    model, data = _model_and_batch(preset, batch)
    rows = []
    for name in proxies:
        value = score(name, model, data)
        walls, cpus = [], []
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            score(name, model, data)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        rows.append((name, value, statistics.median(walls), statistics.median(cpus)))
    return rows


def time_shared(preset: str, proxies: list[str], *, batch: int, repeats: int) -> tuple[float, float]:
    """Median CPU seconds of all ``proxies`` on ``preset``: one :func:`score` call each, then one
    :func:`score_all` call, the two taken in turns ``repeats`` times."""

    from evaluators.zero_cost import score, score_all

    model, data = _model_and_batch(preset, batch)
    separate, shared = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        for name in proxies:
            score(name, model, data)
        c1 = time.process_time()
        score_all(proxies, model, data)
        separate.append(c1 - c0)
        shared.append(time.process_time() - c1)
    return statistics.median(separate), statistics.median(shared)


def main() -> None:
    from evaluators.zero_cost import list_proxies

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="wrn-16-1,ghostnet-cifar")
    ap.add_argument("--proxies", default=",".join(list_proxies()))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    print(f"batch {args.batch}, {args.threads} thread(s), median of {args.repeats} after one untimed call")
    for preset in (p.strip() for p in args.presets.split(",") if p.strip()):
        print(f"\n{preset}\n{'proxy':<10} {'value':>13} {'wall s':>8} {'cpu s':>8}")
        for name, value, wall, cpu in time_proxies(preset, proxies, batch=args.batch, repeats=args.repeats):
            print(f"{name:<10} {value:>13.5g} {wall:>8.3f} {cpu:>8.3f}", flush=True)
        separate, shared = time_shared(preset, proxies, batch=args.batch, repeats=args.repeats)
        print(f"all {len(proxies)}, one call each: {separate:.3f} cpu s; score_all (shared passes): "
              f"{shared:.3f} cpu s; ratio {shared / separate:.2f}", flush=True)


if __name__ == "__main__":
    main()
