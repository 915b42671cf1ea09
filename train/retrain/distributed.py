"""Process-group set-up for ``torchrun``-launched data parallelism, and the collectives retrain needs.

``torchrun --nproc_per_node N -m train.retrain ...`` (or ``nas retrain --nproc N``, which starts them
through torchrun) starts N processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; each joins one
process group: NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on the CPU. Without
those variables (or with ``WORLD_SIZE=1``) everything runs in one process and every collective
here is a no-op.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist

SPEC_ENV = "NAS_RETRAIN_SPEC"


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, its ``device``, and whether we own the group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the ``torchrun`` process group if ``WORLD_SIZE > 1``; resolve ``device`` for this rank.

    ``device='cuda'`` becomes ``cuda:LOCAL_RANK`` under torchrun; ``cpu`` uses gloo.
    """
    from train import resolve_device

    dev = resolve_device(device, field="device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, 0, dev)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"device: local rank {local} has no GPU ({torch.cuda.device_count()} visible); "
                             f"start at most {torch.cuda.device_count()} processes per node")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, owns_group=owns)


def shutdown(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sums(values: Sequence[float | torch.Tensor], info: DistInfo) -> list[float]:
    """Sum each value over all ranks (one collective, in float64: Python floats keep their precision); plain floats
    out."""
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64).detach().to(device=info.device).reshape(())
                     for v in values])
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def launch(nproc: int, *, arch_yaml: str, config: dict[str, Any], out_dir: str, resume: bool) -> int:
    """Run :func:`train.retrain.retrain` in ``nproc`` processes via ``torchrun --standalone``.

    The workers (:mod:`train.retrain.worker`) read the arch, config and options from the
    environment variable :data:`SPEC_ENV` (JSON); returns torchrun's exit status.
    """
    spec = {"arch_yaml": arch_yaml, "config": config, "out_dir": out_dir, "resume": resume}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "train.retrain.worker"]
    env = {**os.environ, SPEC_ENV: json.dumps(spec)}
    env.setdefault("OMP_NUM_THREADS", str(config.get("threads") or 1))
    return subprocess.run(cmd, env=env).returncode
