"""Seeds of data order and augmentation, and the loader parts that make file-backed data follow them.

Epoch ``e`` of a run seeded ``seed`` draws its order from a generator seeded by :func:`epoch_seed`
(in-memory loaders draw their vectorised crops and flips from it too). File-backed data sets augment
one sample at a time in ``DataLoader`` workers; :class:`SeededAugment` draws sample ``i``'s
augmentation from RNGs seeded by :func:`sample_seed` ``(seed, e, i)``, and :class:`EpochSampler`
hands it ``(e, i)`` keys, so the batches depend on neither the number of workers nor the process
that loads them.
"""
from __future__ import annotations

import copy
import hashlib
import random
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from .checks import check_positive_int


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of epoch ``epoch`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The RNG seed of sample ``index`` in epoch ``epoch`` of a run seeded ``seed`` (a 63-bit BLAKE2b hash)."""
    digest = hashlib.blake2b(b"%d,%d,%d" % (seed, epoch, index), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed torch's CPU, numpy's and Python's global RNGs for the block.

    In the main process their states are restored afterwards (dropout and mixup draw from them); a
    loader worker process draws nothing else from them, so it skips that (saving numpy's state alone
    costs ~0.15 ms).
    """
    saved = None
    if get_worker_info() is None:
        saved = torch.default_generator.get_state(), np.random.get_state(), random.getstate()
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        if saved is not None:
            torch.default_generator.set_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])


class SeededAugment(Dataset):
    """``dataset``'s samples through ``transform``, drawn from RNGs seeded by ``(seed, epoch, index)``.

    Keys are ``(epoch, index)`` pairs (:class:`EpochSampler` yields them). The global RNGs that
    torchvision's and timm's transforms draw from are seeded per sample (:func:`seeded_global_rngs`),
    so sample ``index`` of epoch ``epoch`` is the same image whichever worker process (or the main
    process) loads it, and loading it in the main process disturbs nothing else (dropout, mixup).
    """

    def __init__(self, dataset: Any, transform: Any, *, seed: int) -> None:
        self.raw = copy.copy(dataset)
        self.raw.transform = None
        self.transform, self.seed = transform, seed

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, int]:
        epoch, index = key
        image, label = self.raw[index]
        with seeded_global_rngs(sample_seed(self.seed, epoch, index)):
            return self.transform(image), label


class EpochSampler(Sampler):
    """``(epoch, index)`` keys of a shuffled pass over ``indices`` for :class:`SeededAugment`.

    Epoch ``e`` (counted by ``__iter__``; settable with :meth:`set_epoch`) visits ``indices`` in
    :class:`train.TensorLoader`'s order: a permutation drawn from a generator seeded by ``(seed, e)``.
    With ``world_size`` processes the order is cut into global batches of ``batch_size ×
    world_size`` and rank ``r`` takes rows ``[r·b, (r+1)·b)`` of each, so step t's batches over the
    ranks make up the one-process batch of step t. ``drop_last`` drops a trailing partial global
    batch (needed with more than one process: every rank must run the same steps).
    """

    def __init__(self, indices: Sequence[int], *, seed: int, batch_size: int = 1, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> None:
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if world_size > 1 and not drop_last:
            raise ValueError(f"drop_last: {world_size} processes need whole global batches; set drop_last=True")
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.global_batch = self.batch_size * world_size
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.global_batch * self.batch_size if self.drop_last else n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = self.indices[torch.randperm(len(self.indices), generator=gen)]
        if self.drop_last:
            g, b = self.global_batch, self.batch_size
            order = order[:len(order) // g * g].view(-1, g)[:, self.rank * b:(self.rank + 1) * b].reshape(-1)
        return iter([(epoch, i) for i in order.tolist()])
