"""Data-parallel retraining: ``nas retrain --nproc 2`` and ``torchrun -m train.retrain`` (gloo on the CPU)
train like one process with the same global batch.

The network uses GroupNorm: per-sample statistics, so splitting a batch over two processes does
not change the forward pass (BatchNorm would normalise each half by its own statistics, and
SyncBatchNorm needs CUDA). The sharded loader gives the two ranks exactly the one-process batch,
augmentation included; the remaining difference is the float summation order of the gradient
all-reduce. Its size was measured against a reference for pure rounding noise: the same
one-process run with 2 threads instead of 1 differs from itself by max |Δw| ≈ 2e-5 after these 44
steps; the 2-process run differs by ≈ 3e-5, its epoch losses by ~1e-7 (relative), its accuracies
not at all. The tolerances below sit above that and far below what another data order gives
(measured: epoch losses 1e-4..6e-4 apart, relative; 6 test digits flip). The small lr (0.02)
keeps training out of the chaotic regime: at lr 0.2 rounding differences grow until even 1 vs 2
threads in one process changes the test accuracy by 1-2 points after 2 epochs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from space import Arch, Head, Stage, Stem
from train.retrain import RetrainConfig, retrain


def gn_arch() -> Arch:
    plan = ((8, 1), (16, 2), (32, 2))
    st = [Stage("basic", 1, w, s, norm="gn", norm_args={"groups": 4}, order="pre") for w, s in plan]
    return Arch(stem=Stem(width=8), stages=tuple(st), head=Head(), input_size=16)


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    arch = gn_arch()
    path = tmp_path / "gn.yaml"
    path.write_text(arch.to_yaml())
    cfg = RetrainConfig(epochs=2, batch_size=64, lr=0.02, log_interval=0, tensorboard=False, threads=1)
    one = retrain(arch, cfg, out_dir=tmp_path / "one", out=lambda s: None)

    proc = subprocess.run([sys.executable, "-m", "search.cli", "retrain", str(path), "--nproc", "2", "-b", "32",
                           "--epochs", "2", "--lr", "0.02", "--log-interval", "0", "--no-tensorboard", "--threads",
                           "1", "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2  # rank 0 alone reports
    assert sum(line.startswith("test accuracy") for line in lines) == 1
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (two["world_size"], two["global_batch"], one["global_batch"]) == (2, 64, 64)

    for a, b in zip(one["history"], two["history"]):  # measured: relative loss differences ~1e-7, accuracies equal
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-5)
        assert abs(b["test_acc"] - a["test_acc"]) <= 1 / 359  # at most 1 of the 359 test digits flips
        assert abs(b["train_acc"] - a["train_acc"]) <= 2 / 1408
    w1 = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    w2 = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 5e-4  # measured 3e-5

    # the checkpoint records the world size; resuming it with another one is refused
    state = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # ranks draw independently
    with pytest.raises(ValueError, match="written by 2 process"):
        retrain(arch, cfg.replace(epochs=2), out_dir=tmp_path / "two", resume=True, out=lambda s: None)


def test_torchrun_module_train_retrain_matches_one_process(tmp_path):
    """``torchrun --nproc_per_node 2 -m train.retrain`` (the parser of ``nas retrain``, no ``nas`` around it)."""
    arch = gn_arch()
    path = tmp_path / "gn.yaml"
    path.write_text(arch.to_yaml())
    cfg = RetrainConfig(epochs=1, batch_size=64, lr=0.02, log_interval=0, tensorboard=False, threads=1)
    one = retrain(arch, cfg, out_dir=tmp_path / "one", out=lambda s: None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "train.retrain", str(path), "-b", "32", "--epochs", "1", "--lr", "0.02",
                           "--log-interval", "0", "--no-tensorboard", "--threads", "1", "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sum(line.startswith("test accuracy") for line in proc.stdout.splitlines()) == 1  # rank 0 alone
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (two["world_size"], two["global_batch"]) == (2, 64)
    assert two["history"][0]["train_loss"] == pytest.approx(one["history"][0]["train_loss"], rel=1e-5)


class _CountingLoader:
    def __init__(self, batches: list) -> None:
        self.batches, self.served = batches, 0

    def __iter__(self):
        for b in self.batches:
            self.served += 1
            yield b


def _bn_net(seed: int, sync_bn: bool) -> torch.nn.Module:
    torch.manual_seed(seed)  # no conv bias: BatchNorm cancels it, its GradInit scale would follow rounding noise
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(net) if sync_bn else net


def _gradinit_batches() -> list:
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]


def _gradinit_rank(rank: int, store: str, out: str, sync_bn: bool) -> None:
    import torch.distributed as dist

    from train.methods.gradinit import gradinit_once

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        net = _bn_net(rank, sync_bn)  # the ranks start from different weights
        loader = _CountingLoader(_gradinit_batches())
        stats = gradinit_once(net, loader, distributed=True, is_main=rank == 0, lr=0.1, gamma=1e9, iters=3,
                              scale_lr=0.05)
        torch.save({"params": [p.detach() for p in net.parameters()], "served": loader.served, "stats": stats},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("sync_bn", [False, True])
def test_gradinit_runs_once_on_rank_0_and_every_rank_gets_its_weights(tmp_path, sync_bn):
    """Two gloo ranks: rank 0 alone draws batches, the ranks end equal to one single-process GradInit of rank 0's
    model. With SyncBatchNorm (which refuses CPU tensors in train mode) rank 0 runs on a plain-BN copy."""
    import torch.multiprocessing as mp

    from train.methods import gradinit

    mp.spawn(_gradinit_rank, args=(str(tmp_path / "store"), str(tmp_path), sync_bn), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert (r0["served"], r1["served"]) == (6, 0)  # two batches per iteration, on rank 0 only
    assert r0["stats"]["alpha"] == r1["stats"]["alpha"]
    reference = _bn_net(0, sync_bn=False)
    gradinit(reference, _gradinit_batches(), lr=0.1, gamma=1e9, iters=3, scale_lr=0.05)
    for a, b, ref in zip(r0["params"], r1["params"], reference.parameters()):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, ref.detach())
