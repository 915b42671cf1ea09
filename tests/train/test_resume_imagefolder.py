"""File-backed (ImageFolder) data resume exactly: augmentation is a function of (seed, epoch, sample index).

A tiny ImageFolder tree (40 random 24×24 PNGs in 2 classes, 16×16 crops) and a tiny CPU network, one thread,
so runs are bit-reproducible; loader workers are real worker processes.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from space import Arch, Head, Stage, Stem
from train import TensorSplit, load_dataset, make_loaders
from train.retrain import RetrainConfig, ShardedTensorLoader, make_train_loader, retrain
from train.retrain.distributed import DistInfo
from train.seeding import EpochSampler, SeededAugment

from ._callbacks import StopAt


def write_tree(root, *, per_class: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", 4)):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i:02d}.png")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    write_tree(root, per_class=20)
    return root


def rank(r: int, world: int) -> DistInfo:
    return DistInfo(rank=r, world_size=world, local_rank=r, device=torch.device("cpu"))


def epoch_batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_loader_batches_depend_on_seed_epoch_and_index_only(tree):
    data = load_dataset("imagefolder", data_dir=str(tree), image_size=16)
    one = make_train_loader(data, batch_size=8, seed=3, info=rank(0, 1), workers=0)
    assert len(one) == 40 // 8
    ref = epoch_batches(one, 1)
    # other worker counts, epochs visited in another order: the same batches
    for workers in (1, 2):
        other = make_train_loader(data, batch_size=8, seed=3, info=rank(0, 1), workers=workers)
        epoch_batches(other, 0)
        for (x, y), (rx, ry) in zip(epoch_batches(other, 1), ref, strict=True):
            assert torch.equal(x, rx) and torch.equal(y, ry)
    # the order is the in-memory sharded loader's (the same labels in the same order)
    labels = torch.tensor(data.train.targets)
    mem = ShardedTensorLoader(TensorSplit(torch.zeros(40, 1, 2, 2), labels, mean=(0.0,), std=(1.0,)), batch_size=8,
                              seed=3)
    mem.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in mem]), torch.cat([y for _, y in ref]))
    # two ranks of 4: step t's batches concatenate to the one-process batch of 8, augmentation included
    r0, r1 = (epoch_batches(make_train_loader(data, batch_size=4, seed=3, info=rank(r, 2), workers=r), 1)
              for r in (0, 1))
    for (x0, y0), (x1, y1), (x, y) in zip(r0, r1, ref, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    # another epoch reshuffles; the augmentation is random: another epoch or seed crops an image differently
    assert not torch.equal(torch.cat([y for _, y in epoch_batches(one, 2)]), torch.cat([y for _, y in ref]))
    seed4 = make_train_loader(data, batch_size=8, seed=4, info=rank(0, 1), workers=0).dataset
    view, again = one.dataset[(1, 0)][0], one.dataset[(1, 0)][0]
    assert torch.equal(view, again)
    assert not torch.equal(view, one.dataset[(2, 0)][0]) and not torch.equal(view, seed4[(1, 0)][0])
    with pytest.raises(ValueError, match="drop_last"):
        EpochSampler(range(40), seed=0, batch_size=4, world_size=2)


def draw_from_every_rng(image) -> torch.Tensor:
    """A transform drawing from torch's, numpy's and Python's global RNGs (torchvision and timm use all three)."""
    return torch.tensor([torch.rand(()).item(), np.random.rand(), random.random()], dtype=torch.float64)


def test_seeded_augment_seeds_all_three_global_rngs_and_restores_them_in_the_main_process(tree):
    data = load_dataset("imagefolder", data_dir=str(tree), image_size=16)
    ds = SeededAugment(data.train, draw_from_every_rng, seed=5)
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    expected = torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)]
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    first = ds[(1, 7)][0]
    assert torch.equal(first, ds[(1, 7)][0]) and len(set(first.tolist())) == 3
    assert not torch.equal(first, ds[(2, 7)][0]) and not torch.equal(first, ds[(1, 8)][0])
    # what the main process draws next is untouched by the samples loaded in between
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]
    # worker processes give each sample the same draws as the main process
    sampler = EpochSampler(range(len(ds)), seed=0)
    sampler.set_epoch(1)
    keys = list(sampler)
    sampler.set_epoch(1)
    loaded = torch.cat([x for x, _ in torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler, num_workers=2)])
    assert torch.equal(loaded, torch.stack([ds[k][0] for k in keys]))


def test_proxy_loader_is_a_function_of_seed_and_epoch(tree):
    data = load_dataset("imagefolder", data_dir=str(tree), image_size=16)
    runs = []
    for workers in (0, 2):
        train, _ = make_loaders(data, batch_size=6, val_fraction=0.2, seed=1, num_workers=workers)
        runs.append([torch.cat([x for x, _ in train]) for _ in range(2)])  # two epochs
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[0][1])


def tiny() -> Arch:
    st = [Stage("basic", 1, w, s, norm="bn", order="pre") for w, s in ((8, 1), (16, 2))]
    return Arch(stem=Stem(width=8), stages=tuple(st), head=Head(dropout=0.2), input_size=16)


def test_retrain_resume_on_imagefolder_ends_bit_identical_whatever_the_workers(tree, tmp_path):
    cfg = RetrainConfig(data="imagefolder", data_dir=str(tree), image_size=16, epochs=2, batch_size=8, workers=2,
                        threads=1, log_interval=0, tensorboard=False)
    quiet = lambda s: None  # noqa: E731
    straight = retrain(tiny(), cfg, out_dir=tmp_path / "a", out=quiet)
    with pytest.raises(KeyboardInterrupt):
        retrain(tiny(), cfg, out_dir=tmp_path / "b", out=quiet, callbacks=[StopAt(1)])
    resumed = retrain(tiny(), cfg.replace(workers=0), out_dir=tmp_path / "b", resume=True, out=quiet)
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in straight["history"]]
