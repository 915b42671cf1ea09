"""The GPU paths, run for real on a CUDA machine: one prepared script for a short lease of a GPU.

Every check compares with something independent of the code it checks:

1. ``latency``: the ``latency`` evaluator on ``cuda`` (CUDA events, :mod:`evaluators.latency`), plain and
   interleaved protocols, 8 repeats each (CV), beside ``torch.utils.benchmark.Timer`` (PyTorch's own timer, which
   synchronises CUDA) on the same model and input: the ratio ours / PyTorch's should be close to 1.
2. ``zero-cost``: every zero-cost proxy of one network on CUDA and on the CPU, same weights and batch: relative
   difference per proxy (float32 on two devices; large only for a proxy that is numerically fragile).
3. ``retrain``: ``python -m train.retrain`` on the CIFAR-10 data at fp32, bf16 and fp16 autocast (same seed, same
   epochs): test accuracy and images/s from each run's ``metrics.json``; AMP should train as well and faster.
4. ``ddp``: ``torchrun --nproc_per_node 1 -m train.retrain ... --sync-bn``: the NCCL process group, the sharded
   loader and the all-reduced metrics in one process per GPU (this machine has one GPU).
5. ``compile``: ``--compile`` (``torch.compile``) on CUDA for one short run.
6. ``ort``: ONNX Runtime's providers; with ``CUDAExecutionProvider`` the ``ort-cuda`` latency of the same model.

    NAS_DATA_DIR=../shared/data python bench/gpu_paths.py --out results/gpu   # on a machine with a GPU

Prints one block per check and writes ``gpu_paths.json`` under ``--out``. A check that fails prints its error and
the others still run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def check_latency(args: argparse.Namespace) -> dict:
    import torch.utils.benchmark as tb

    from evaluators.latency import LatencyEvaluator
    from evaluators.latency_protocol import ReferenceLatency
    from space import build_model, get_preset

    rows = {}
    for preset in ("wrn-16-1", "wrn-16-4"):
        arch = get_preset(preset)
        for batch in (1, 64):
            row = {}
            for protocol in ("plain", "interleaved"):
                ev = LatencyEvaluator(num_classes=10, in_chans=3, device="cuda", batch_sizes=(batch,),
                                      protocol=protocol, references=ReferenceLatency(),
                                      max_seconds=args.max_seconds)
                prepared = ev.prepare(arch)
                vals = [ev.measure(prepared, input_size=arch.input_size)["latency_ms"] for _ in range(args.repeats)]
                row[protocol] = {"median_ms": statistics.median(vals), "cv": cv(vals), "values": vals}
            with torch.random.fork_rng(devices=[]):
                model = build_model(arch, num_classes=10).cuda().eval()
            x = torch.randn(batch, 3, arch.input_size, arch.input_size, device="cuda")
            with torch.inference_mode():
                timer = tb.Timer(stmt="model(x)", globals={"model": model, "x": x})
                m = timer.blocked_autorange(min_run_time=1.0)
            row["torch_benchmark_ms"] = m.median * 1e3
            row["ratio_plain_vs_torch"] = row["plain"]["median_ms"] / row["torch_benchmark_ms"]
            rows[f"{preset} b{batch}"] = row
            print(f"  {preset:9} b{batch:<3} plain {row['plain']['median_ms']:.4f} ms (CV {row['plain']['cv']:.1%})  "
                  f"interleaved {row['interleaved']['median_ms']:.4f} ms (CV {row['interleaved']['cv']:.1%})  "
                  f"torch.utils.benchmark {row['torch_benchmark_ms']:.4f} ms  ratio {row['ratio_plain_vs_torch']:.3f}",
                  flush=True)
    return rows


def check_zero_cost(args: argparse.Namespace) -> dict:
    from evaluators.zero_cost import PROXIES
    from evaluators.zero_cost.shared import score_all
    from space import build_model, get_preset

    arch = get_preset("wrn-16-1")
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    import copy
    cpu = score_all(list(PROXIES), copy.deepcopy(model), (x, y))
    gpu = score_all(list(PROXIES), copy.deepcopy(model).cuda(), (x.cuda(), y.cuda()))
    rows = {}
    for name in PROXIES:
        a, b = cpu[name], gpu[name]
        rel = abs(a - b) / max(abs(a), 1e-12)
        rows[name] = {"cpu": a, "cuda": b, "rel_diff": rel}
        print(f"  {name:10} cpu {a:.6g}  cuda {b:.6g}  rel. diff {rel:.2e}", flush=True)
    return rows


def run_cmd(cmd: list[str], log: Path, timeout: float) -> tuple[int, float]:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT).returncode
    return code, time.perf_counter() - t0


def retrain_cmd(args: argparse.Namespace, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train.retrain", args.arch, "--data", "cifar10", "--data-dir", args.data_dir,
            "--epochs", str(args.epochs), "--device", "cuda", "--out", str(out), "--no-tensorboard", *extra]


def metrics_of(out: Path) -> dict:
    """Test accuracy, training seconds and the last epoch's images/s of a finished ``train.retrain`` run."""
    m = json.loads((out / "metrics.json").read_text())
    last = m["history"][-1] if m.get("history") else {}
    return {"test_acc": m["test_acc"], "train_seconds": m["seconds"], "images_per_s": last.get("images_per_s"),
            "world_size": m["world_size"], "epochs": m["epochs"]}


def check_retrain(args: argparse.Namespace) -> dict:
    rows = {}
    for amp in ("none", "bf16", "fp16"):
        out = args.out / f"retrain_{amp}"
        code, secs = run_cmd(retrain_cmd(args, out, "--amp", amp), args.out / f"retrain_{amp}.log", args.timeout)
        rows[amp] = {"exit": code, "wall_s": secs, **(metrics_of(out) if code == 0 else {})}
        print(f"  amp {amp:5} exit {code} wall {secs:.1f} s  {json.dumps(rows[amp])}", flush=True)
    return rows


def check_ddp(args: argparse.Namespace) -> dict:
    out = args.out / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m",
           "train.retrain", *retrain_cmd(args, out, "--sync-bn", "--amp", "bf16")[3:]]
    code, secs = run_cmd(cmd, args.out / "ddp.log", args.timeout)
    row = {"exit": code, "wall_s": secs, **(metrics_of(out) if code == 0 else {})}
    print(f"  torchrun 1×GPU NCCL, sync-bn, bf16: exit {code} wall {secs:.1f} s  {json.dumps(row)}", flush=True)
    return row


def check_compile(args: argparse.Namespace) -> dict:
    out = args.out / "compile"
    code, secs = run_cmd(retrain_cmd(args, out, "--compile", "--amp", "bf16"), args.out / "compile.log", args.timeout)
    row = {"exit": code, "wall_s": secs, **(metrics_of(out) if code == 0 else {})}
    print(f"  --compile bf16: exit {code} wall {secs:.1f} s  {json.dumps(row)}", flush=True)
    return row


def check_ort(args: argparse.Namespace) -> dict:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    row: dict = {"providers": providers, "onnxruntime": ort.__version__}
    print(f"  onnxruntime {ort.__version__}, providers {providers}", flush=True)
    if "CUDAExecutionProvider" in providers:
        from evaluators.latency import LatencyEvaluator
        from space import get_preset

        arch = get_preset("wrn-16-1")
        for device in ("cuda", "ort-cuda"):
            ev = LatencyEvaluator(num_classes=10, in_chans=3, device=device, batch_sizes=(64,))
            row[device] = ev.evaluate(arch)["latency_ms"]
            print(f"  {device}: wrn-16-1 b64 {row[device]:.4f} ms", flush=True)
    return row


CHECKS = {"latency": check_latency, "zero-cost": check_zero_cost, "retrain": check_retrain, "ddp": check_ddp,
          "compile": check_compile, "ort": check_ort}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_paths")
    ap.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated, of: {', '.join(CHECKS)}")
    ap.add_argument("--data-dir", default=os.environ.get("NAS_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--arch", default="wrn-16-4", help="the network the training checks train")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=8, help="latency measurements per protocol (CV over them)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one training run may take")
    ap.add_argument("--max-seconds", type=float, default=3.0, help="time cap of one interleaved measurement")
    args = ap.parse_args()
    names = [c for c in args.checks.split(",") if c]
    bad = [c for c in names if c not in CHECKS]
    if bad:
        ap.error(f"--checks: unknown {', '.join(bad)}; valid: {', '.join(CHECKS)}")
    if not torch.cuda.is_available():
        print("gpu_paths: CUDA is unavailable on this machine", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}", flush=True)
    results: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name()}
    for name in names:
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        try:
            results[name] = CHECKS[name](args)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
        (args.out / "gpu_paths.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
