"""What a reduced input resolution saves in proxy training: one SGD step of each network at two sizes, side by side.

    .venv/bin/python bench/resolution_cost.py                      # every CIFAR preset, 16 vs 32 pixels
    .venv/bin/python bench/resolution_cost.py --presets wrn-16-1,ghostnet-cifar --sizes 16,32 --steps 3

One step is forward, cross-entropy, backward and an SGD (momentum 0.9) update in train mode on a random batch of
``--batch`` images (the proxy's 128), one thread. Per network, after one warm-up step at each size, the timed steps
alternate the sizes (small, large, large, small, ...) so that the machine's drift hits both alike; the table shows
the median milliseconds per step at each size, the seconds an epoch of ``--images`` images would take at that rate,
the MACs per image (conv + linear, :func:`space.complexity.count_complexity`) at each size, and the ratio of the
step times large/small beside the ratio of the MACs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRESETS = ("wrn-16-1", "wrn-16-2", "wrn-16-4", "ghostnet-cifar", "g-ghost-cifar", "sknet-cifar", "resnext-cifar",
           "mgic-cifar", "gconv-cifar", "resattn-cifar")


def step_times(name: str, sizes: tuple[int, int], *, batch: int, steps: int, seed: int = 0) -> dict[int, list[float]]:
    """Seconds of each timed step of preset ``name`` at both ``sizes`` (alternating, after one warm-up each)."""
    import torch
    import torch.nn.functional as F

    from space import build_model, get_preset

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for size in sizes:
        torch.manual_seed(seed)
        model = build_model(get_preset(name).replace(input_size=size), num_classes=10, in_chans=3)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        x, y = torch.randn(batch, 3, size, size, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
        state[size] = (model.train(), opt, x, y)

    def one(size: int) -> float:
        model, opt, x, y = state[size]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    for size in sizes:
        one(size)
    out: dict[int, list[float]] = {s: [] for s in sizes}
    for k in range(steps):
        order = sizes if k % 2 == 0 else sizes[::-1]
        for size in order:
            out[size].append(one(size))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--sizes", default="16,32", help="two input sizes, small,large (default 16,32)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per size and network (default 4)")
    ap.add_argument("--images", type=int, default=8000, help="images per epoch for the s/epoch column")
    args = ap.parse_args(argv)
    try:
        small, large = (int(s) for s in args.sizes.split(","))
    except ValueError:
        ap.error(f"--sizes: two integers small,large, got {args.sizes!r}")
    if not 4 <= small < large:
        ap.error(f"--sizes: need 4 <= small < large, got {small},{large}")
    if args.steps < 1 or args.batch < 1:
        ap.error("--steps and --batch: must be >= 1")

    import torch

    from space import build_model, get_preset
    from space.complexity import count_complexity

    torch.set_num_threads(1)
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    for n in names:
        get_preset(n)  # a bad name stops before anything is timed
    per_epoch = args.images / args.batch
    print(f"one SGD step, batch {args.batch}, 1 thread, median of {args.steps} alternating steps per size")
    print(f"{'network':<16}{'ms/step ' + str(small):>13}{'ms/step ' + str(large):>13}{'s/epoch ' + str(small):>13}"
          f"{'s/epoch ' + str(large):>13}{'time ×':>8}{'MACs ×':>8}")
    ratios = []
    for n in names:
        t = step_times(n, (small, large), batch=args.batch, steps=args.steps)
        ms = {s: statistics.median(v) * 1000 for s, v in t.items()}
        macs = {s: count_complexity(build_model(get_preset(n).replace(input_size=s), num_classes=10, in_chans=3),
                                    input_size=s, in_chans=3)["macs"] for s in (small, large)}
        ratio = ms[large] / ms[small]
        ratios.append(ratio)
        print(f"{n:<16}{ms[small]:>13.0f}{ms[large]:>13.0f}{ms[small] * per_epoch / 1000:>13.1f}"
              f"{ms[large] * per_epoch / 1000:>13.1f}{ratio:>8.2f}{macs[large] / macs[small]:>8.2f}", flush=True)
    print(f"median time ratio {large}/{small}: {statistics.median(ratios):.2f} over {len(ratios)} network(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
