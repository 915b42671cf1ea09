"""File-backed (ImageFolder) data resume exactly: augmentation is a function of (seed, epoch, sample index).

A tiny ImageFolder tree (40 random 24×24 PNGs in 2 classes, 16×16 crops) and a tiny CPU network, one thread,
so runs are bit-reproducible; loader workers are real worker processes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from space import Arch, Head, Stage, Stem
from train import TensorSplit, load_dataset, make_loaders
from train.retrain import Callback, RetrainConfig, ShardedTensorLoader, make_train_loader, retrain
from train.retrain.distributed import DistInfo


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
    for workers in (1, 3):
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
    views = [one.dataset[(1, 0)][0], one.dataset[(2, 0)][0], seed4[(1, 0)][0], one.dataset[(1, 0)][0]]
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[0], views[2]) and torch.equal(views[0], views[3])


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


class StopAt(Callback):
    """Simulates a kill right after epoch ``epoch``'s checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, ctx) -> None:
        if ctx.epoch == self.epoch:
            raise KeyboardInterrupt


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
