"""Loaders for retraining, sharded over data-parallel ranks.

:class:`ShardedTensorLoader` serves an in-memory split (digits, CIFAR) like
:class:`train.TensorLoader` — same per-epoch permutation and the same vectorised crop/flip
drawn from a generator seeded by ``(seed, epoch)`` — and shards it so that the data are
independent of the number of processes: epoch e's permutation is cut into *global* batches of
``batch_size × world_size`` samples, rank r takes rows ``[r·b, (r+1)·b)`` of each, and the crop
offsets and flips are drawn for the whole global batch before slicing. The union over ranks of
step t's batches is therefore exactly step t's batch of a single process with the global batch
size, augmentation included (what ``DistributedSampler`` gives for the order, extended to the
augmentation). A trailing partial global batch is dropped (timm's ``drop_last`` for training),
so every rank runs the same number of equal steps. On an accelerator the uint8 split is held in
device memory (CIFAR-10: 150 MB) and batches are gathered and augmented there.

File-backed data (imagefolder) use a ``DataLoader`` over :class:`train.seeding.SeededAugment` keyed by
:class:`train.seeding.EpochSampler`: the same order and sharding, and each sample's augmentation drawn
from RNGs seeded by ``(seed, epoch, index)``, so the batches do not depend on the number of loader
workers (which may change on resume) nor on the rank that loads them. Test loaders give each rank a
contiguous, un-padded shard; metrics are summed over ranks, so every test image counts exactly once.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from train import DataBundle, TensorLoader, TensorSplit
from train.data import to_unit_float
from train.seeding import EpochSampler, SeededAugment, epoch_seed

from .distributed import DistInfo


def crop_flip(x: torch.Tensor, *, pad: int, oy: torch.Tensor, ox: torch.Tensor,
              mirrored: torch.Tensor | None) -> torch.Tensor:
    """Crop each zero-padded sample of ``x`` (B×C×H×W) at offsets ``(oy, ox)``; mirror where ``mirrored``."""
    b, c, h, w = x.shape
    if pad > 0:
        x = F.pad(x, (pad, pad, pad, pad))
    dev = x.device
    rows = oy[:, None] + torch.arange(h, device=dev)
    cols = ox[:, None] + torch.arange(w, device=dev)
    if mirrored is not None:
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    return x[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]


class ShardedTensorLoader:
    """Rank ``rank``'s share of shuffled, augmented global batches of an in-memory split (see module doc)."""

    def __init__(self, split: TensorSplit, *, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 pad: int = 0, flip: bool = False, device: torch.device | str | None = None) -> None:
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.seed, self.pad, self.flip = seed, pad, flip
        self.device = torch.device(device) if device is not None else split.images.device
        if self.device != split.images.device:
            # the (uint8) split moves to the accelerator once: gathering, crop/flip and normalising run there,
            # from the same CPU-drawn indices and offsets, so batches do not depend on the device
            split = copy.copy(split)
            split.images, split.labels = split.images.to(self.device), split.labels.to(self.device)
            split.mean, split.std = split.mean.to(self.device), split.std.to(self.device)
        self.split = split
        self.global_batch = batch_size * world_size
        if len(split) < self.global_batch:
            raise ValueError(f"batch_size: the global batch ({batch_size} × {world_size} processes) is larger than "
                             f"the {len(split)} training images")
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.split) // self.global_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        order = torch.randperm(len(self.split), generator=gen)
        g, lo, hi = self.global_batch, self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for step in range(len(self)):
            idx = order[step * g:(step + 1) * g][lo:hi].to(self.device)
            x = to_unit_float(self.split.images[idx])
            if self.pad > 0 or self.flip:
                # drawn for the whole global batch, in random_crop_flip's order, then this rank's rows
                oy = ox = torch.zeros(g, dtype=torch.long)
                if self.pad > 0:
                    oy = torch.randint(0, 2 * self.pad + 1, (g,), generator=gen)
                    ox = torch.randint(0, 2 * self.pad + 1, (g,), generator=gen)
                mirrored = (torch.rand(g, generator=gen) < 0.5)[lo:hi].to(self.device) if self.flip else None
                x = crop_flip(x, pad=self.pad, oy=oy[lo:hi].to(self.device), ox=ox[lo:hi].to(self.device),
                              mirrored=mirrored)
            yield self.split.normalise(x), self.split.labels[idx]


def make_train_loader(bundle: DataBundle, *, batch_size: int, seed: int, info: DistInfo, workers: int = 4) -> Any:
    """This rank's augmented training loader over the whole training split (see module doc)."""
    if bundle.in_memory:
        return ShardedTensorLoader(bundle.train, batch_size=batch_size, rank=info.rank, world_size=info.world_size,
                                   seed=seed, pad=bundle.pad, flip=bundle.flip, device=info.device)
    n = len(bundle.train)
    if n < batch_size * info.world_size:
        raise ValueError(f"batch_size: the global batch ({batch_size} × {info.world_size}) is larger than the "
                         f"{n} training images")
    transform = bundle.train_transform if bundle.train_transform is not None else bundle.train.transform
    sampler = EpochSampler(range(n), seed=seed, batch_size=batch_size, rank=info.rank, world_size=info.world_size,
                           drop_last=True)
    # the loader draws its worker seeds from `generator`, not from the global RNG that dropout and mixup use
    return DataLoader(SeededAugment(bundle.train, transform, seed=seed), batch_size=batch_size, sampler=sampler,
                      num_workers=workers, drop_last=True, pin_memory=info.device.type == "cuda",
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))


def make_eval_loader(bundle: DataBundle, *, batch_size: int, info: DistInfo, workers: int = 4) -> Any:
    """This rank's contiguous shard of the test split, in order, un-augmented and un-padded."""
    n = len(bundle.test)
    per = math.ceil(n / info.world_size)
    shard = torch.arange(min(n, info.rank * per), min(n, (info.rank + 1) * per))
    if bundle.in_memory:
        return TensorLoader(bundle.test, shard, batch_size=batch_size, shuffle=False)
    return DataLoader(Subset(bundle.test, shard.tolist()), batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=info.device.type == "cuda")
