"""Training throughput of our built networks against the same architectures from timm, side by side.

    .venv/bin/python bench/throughput.py [--input-size 96] [--batch 16] [--steps 10] [--warmup 2]
                                         [--device cpu|cuda] [--threads N] [--pairs ghostnet,sknet,wrn]
                                         [--rounds 2] [--clock wall|process] [--channels-last]

Pairs (our preset ↔ timm model; the same layers, equal parameter counts at 1000 classes):
ghostnet ``ghostnet-1.0`` ↔ ``ghostnet_100``; sknet ``sknet-50`` ↔ ``skresnext50_32x4d``;
wrn ``wide-resnet50-2`` ↔ ``wide_resnet50_2``. One step is forward, cross-entropy, backward and an
SGD (momentum 0.9) update in train mode, on the same batch, input size, device and thread count for
both. After ``--warmup`` steps each, the timed steps alternate ours, timm, timm, ours, ... so that
drift of the machine (other processes, clocks) hits both alike; images/s = batch × steps / Σ step time,
and the ratio is ours / timm (> 1: ours is faster).

The steps are split over ``--rounds`` fresh pairs of models, built ours-first and timm-first in turn:
on a CPU the model built second in a process runs a training step ~7-10 % faster than the first
(measured for WRN-50-2 with ours/ours and timm/timm pairs alike), an artefact of memory placement
that alternating the construction order cancels. ``--clock process`` times with the process's CPU
time instead of the wall clock: on a CPU machine shared with other jobs it leaves out the time spent
waiting for them (it is not meaningful for a GPU, whose work the CPU clock does not see).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS = {
    "ghostnet": ("ghostnet-1.0", "ghostnet_100"),
    "sknet": ("sknet-50", "skresnext50_32x4d"),
    "wrn": ("wide-resnet50-2", "wide_resnet50_2"),
}


def _models(pair: str, device, channels_last: bool, *, ours_first: bool):
    """``[(name, model, optimizer)]``, ours then timm's, built in the order ``ours_first`` says."""
    import timm
    import torch

    from space import build_model, get_preset

    preset, timm_name = PAIRS[pair]
    torch.manual_seed(0)
    makers = [lambda: build_model(get_preset(preset), num_classes=1000),
              lambda: timm.create_model(timm_name, num_classes=1000)]
    built = [make() for make in (makers if ours_first else makers[::-1])]
    ours, theirs = built if ours_first else built[::-1]
    out = []
    for name, model in ((f"ours {preset}", ours), (f"timm {timm_name}", theirs)):
        model = model.to(device).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        out.append((name, model, opt))
    return out


def _step(model, opt, x, y, sync, clock) -> float:
    import torch.nn.functional as F

    t0 = clock()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    sync()
    return clock() - t0


def run_pair(pair: str, *, device: str, batch: int, input_size: int, steps: int, warmup: int, rounds: int = 2,
             clock: str = "wall", channels_last: bool = False) -> list[tuple[str, int, float]]:
    """``(model name, params, images/s)`` for our model and timm's, timed interleaved over ``rounds`` builds."""
    import gc

    import torch

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    timer = time.process_time if clock == "process" else time.perf_counter
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, input_size, input_size, generator=gen).to(dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), generator=gen).to(dev)
    totals, done, info = [0.0, 0.0], 0, []
    for r in range(rounds):
        n = steps // rounds + (1 if r < steps % rounds else 0)
        models = _models(pair, dev, channels_last, ours_first=r % 2 == 0)
        info = [(name, sum(p.numel() for p in model.parameters())) for name, model, _ in models]
        for _, model, opt in models:
            for _ in range(warmup):
                _step(model, opt, x, y, sync, timer)
        for s in range(n):
            for i in ((0, 1) if (done + s) % 2 == 0 else (1, 0)):  # ABBA: neither model keeps one position
                _, model, opt = models[i]
                totals[i] += _step(model, opt, x, y, sync, timer)
        done += n
        del models
        gc.collect()
    return [(name, params, batch * done / total) for (name, params), total in zip(info, totals)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated, of: {', '.join(PAIRS)}")
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--rounds", type=int, default=2, help="fresh model pairs, built ours-first/timm-first in turn")
    ap.add_argument("--clock", choices=("wall", "process"), default="wall",
                    help="wall clock, or the process's CPU time (CPU only: leaves out waiting for other jobs)")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args(argv)
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    unknown = [p for p in pairs if p not in PAIRS]
    if unknown:
        ap.error(f"--pairs: unknown {', '.join(unknown)}; valid: {', '.join(PAIRS)}")
    if min(args.batch, args.input_size, args.steps, args.rounds) < 1 or args.warmup < 0 or args.steps < args.rounds:
        ap.error("--batch, --input-size, --steps and --rounds must be >= 1, --warmup >= 0, --steps >= --rounds")
    if args.clock == "process" and not args.device.startswith("cpu"):
        ap.error("--clock process: only meaningful with --device cpu (the CPU clock does not see GPU work)")

    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"input {args.input_size}×{args.input_size}, {args.steps} timed steps each (interleaved, over "
          f"{args.rounds} builds, {args.warmup} warm-up steps per build), forward+backward+SGD, train mode, "
          f"{args.clock} clock" + (", channels_last" if args.channels_last else ""))
    print(f"{'pair':<9}{'model':<30}{'params':>12}{'images/s':>11}{'ours/timm':>11}")
    for pair in pairs:
        (ours, p_ours, ips_ours), (theirs, p_theirs, ips_theirs) = run_pair(
            pair, device=args.device, batch=args.batch, input_size=args.input_size, steps=args.steps,
            warmup=args.warmup, rounds=args.rounds, clock=args.clock, channels_last=args.channels_last)
        note = "" if p_ours == p_theirs else "  (params differ)"
        print(f"{pair:<9}{ours:<30}{p_ours:>12,}{ips_ours:>11.2f}")
        print(f"{'':<9}{theirs:<30}{p_theirs:>12,}{ips_theirs:>11.2f}{ips_ours / ips_theirs:>11.3f}{note}",
              flush=True)


if __name__ == "__main__":
    main()
