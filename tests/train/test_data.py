"""Data sets and loaders: sizes, stratified and seeded splits, the fast tensor loader, augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from train import (
    TensorLoader,
    TensorSplit,
    load_dataset,
    make_loaders,
    make_test_loader,
    random_crop_flip,
    stratified_split,
)


def test_digits_sizes_and_fixed_stratified_test_split(digits):
    assert (digits.num_classes, digits.in_chans, digits.input_size) == (10, 1, 16)
    assert len(digits.train) + len(digits.test) == 1797
    assert digits.train.images.shape[1:] == (1, 16, 16) and digits.test.images.shape[1:] == (1, 16, 16)
    all_labels = np.concatenate([digits.train.labels.numpy(), digits.test.labels.numpy()])
    per_class = np.bincount(all_labels, minlength=10)
    test_per_class = np.bincount(digits.test.labels.numpy(), minlength=10)
    assert np.all(np.abs(test_per_class - 0.2 * per_class) <= 1)  # stratified 20%
    other = load_dataset("digits", seed=7)  # the test split does not depend on the seed
    assert torch.equal(other.test.images, digits.test.images)
    assert torch.equal(other.test.labels, digits.test.labels)
    x, y = digits.train[0]
    assert x.shape == (1, 16, 16) and 0 <= y < 10


def test_digits_native_size():
    small = load_dataset("digits", image_size=8)
    assert small.input_size == 8 and small.train.images.shape[1:] == (1, 8, 8)
    assert float(small.train.images.max()) == 1.0 and float(small.train.images.min()) == 0.0


def test_digits_are_scikit_learns_images_without_importing_scikit_learn():
    """The bundle holds scikit-learn's ``load_digits`` images and labels (read from the file it ships), and loading
    them imports neither scikit-learn nor SciPy: each trial process loads the data set, and those imports cost ~1 s
    there (bench/overhead.py)."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    raw = load_digits()
    small = load_dataset("digits", image_size=8)
    images = torch.cat([small.train.images, small.test.images]) * 16.0
    labels = torch.cat([small.train.labels, small.test.labels])
    ref = [(tuple(im.ravel()), int(t)) for im, t in zip(raw.images, raw.target)]
    got = [(tuple(float(v) for v in im.ravel()), int(t)) for im, t in zip(images.numpy(), labels)]
    assert sorted(got) == sorted(ref)  # the same 1,797 (image, label) pairs, split into train and test
    code = ("import sys; from train import load_dataset; load_dataset('digits'); "
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_val_split_disjoint_stratified_and_seeded(digits):
    train, val = make_loaders(digits, batch_size=64, val_fraction=0.2, seed=0)
    tr, va = set(train.indices.tolist()), set(val.indices.tolist())
    assert not tr & va and tr | va == set(range(len(digits.train)))
    labels = digits.train.labels.numpy()
    frac = np.bincount(labels[list(va)], minlength=10) / np.bincount(labels, minlength=10)
    assert np.all(np.abs(frac - 0.2) < 0.02)
    again, _ = make_loaders(digits, batch_size=64, val_fraction=0.2, seed=0)
    other, _ = make_loaders(digits, batch_size=64, val_fraction=0.2, seed=1)
    assert torch.equal(again.indices, train.indices) and not torch.equal(other.indices, train.indices)


def test_tensor_loader_reshuffles_each_epoch_deterministically(digits):
    a, val = make_loaders(digits, batch_size=100, val_fraction=0.2, seed=3)
    b, _ = make_loaders(digits, batch_size=100, val_fraction=0.2, seed=3)
    assert len(a) == -(-a.num_samples // 100)
    epochs_a = [[(x.clone(), y.clone()) for x, y in a] for _ in range(2)]
    epochs_b = [[(x, y) for x, y in b] for _ in range(2)]
    assert len(epochs_a[0]) == len(a)
    assert sum(len(y) for _, y in epochs_a[0]) == a.num_samples
    for ea, eb in zip(epochs_a, epochs_b):  # same seed: identical batches, augmentation included
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(ea, eb))
    first, second = (torch.cat([y for _, y in e]) for e in epochs_a)
    assert not torch.equal(first, second)  # a new order each epoch
    assert torch.equal(first.sort().values, second.sort().values)
    v1, v2 = [torch.cat([y for _, y in val]) for _ in range(2)]
    assert torch.equal(v1, v2)  # validation: fixed order


def test_loader_normalises(digits):
    loader, _ = make_loaders(digits, batch_size=512, val_fraction=0.2, seed=0, augment=False)
    x = torch.cat([x for x, _ in loader])
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05


def test_random_crop_flip_really_flips():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(x, pad=0, flip=True, generator=gen)
    same = [torch.equal(o, i) for o, i in zip(out, x)]
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    assert all(s or f for s, f in zip(same, flipped))
    assert 10 < sum(flipped) < 54 and 10 < sum(same) < 54


def test_random_crop_is_a_shifted_window():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(16, 2, 10, 10)
    out = random_crop_flip(x, pad=2, flip=False, generator=gen)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for o, p in zip(out, padded):
        hits = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(o, p[:, dy:dy + 10, dx:dx + 10])]
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 3  # per-sample offsets, not one for the batch


def test_stratified_split_holds_out_each_class():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    kept, held = stratified_split(labels, 0.25, seed=0)
    assert np.bincount(labels[held]).tolist() == [2, 5, 8, 10]  # round(0.25·n), at least 1
    assert len(kept) + len(held) == 100 and not set(kept) & set(held)


def test_cifar10_shared_subset(cifar_dir):
    bundle = load_dataset("cifar10", data_dir=str(cifar_dir))
    assert (len(bundle.train), len(bundle.test)) == (10_000, 2_000)
    assert (bundle.num_classes, bundle.in_chans, bundle.input_size) == (10, 3, 32)
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.shape[1:] == (3, 32, 32)
    assert np.bincount(bundle.train.labels.numpy()).tolist() == [1000] * 10
    mean = bundle.train.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.49, 0.48, 0.45]), atol=0.01)
    train, val = make_loaders(bundle, batch_size=256, val_fraction=0.2, seed=0)
    assert train.num_samples == 8_000 and val.num_samples == 2_000
    x, y = next(iter(train))
    assert x.shape == (256, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    test = make_test_loader(bundle, batch_size=500)
    assert len(test) == 4 and torch.equal(torch.cat([y for _, y in test]), bundle.test.labels)


def test_cifar_missing_data_dir(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="data.data_dir"):
        load_dataset("cifar10", data_dir=str(tmp_path / "nowhere"))
    monkeypatch.delenv("NAS_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="data.data_dir.*NAS_DATA_DIR"):
        load_dataset("cifar100")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="cifar10.*digits.*imagefolder"):
        load_dataset("mnist")


def _write_pngs(root, split, per_class, rng):
    for cls in ("cat", "dog"):
        (root / split / cls).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / split / cls / f"{i}.png")


def test_imagefolder(tmp_path):
    rng = np.random.default_rng(0)
    _write_pngs(tmp_path, "train", 6, rng)
    _write_pngs(tmp_path, "val", 2, rng)
    bundle = load_dataset("imagefolder", data_dir=str(tmp_path), image_size=16)
    assert (bundle.num_classes, bundle.in_chans, bundle.input_size) == (2, 3, 16)
    assert (len(bundle.train), len(bundle.test)) == (12, 4)
    train, val = make_loaders(bundle, batch_size=4, val_fraction=1 / 6, seed=0)  # 1 per class
    xs = [x for x, _ in train]
    assert sum(len(x) for x in xs) == 10 and all(x.shape[1:] == (3, 16, 16) for x in xs)
    v1, v2 = (torch.cat([x for x, _ in val]) for _ in range(2))
    assert v1.shape == (2, 3, 16, 16) and torch.equal(v1, v2)  # eval transform: deterministic
    x, y = next(iter(make_test_loader(bundle, batch_size=4)))
    assert x.shape == (4, 3, 16, 16) and y.tolist() == [0, 0, 1, 1]


def test_imagefolder_needs_val_or_test(tmp_path):
    _write_pngs(tmp_path, "train", 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="data.data_dir"):
        load_dataset("imagefolder", data_dir=str(tmp_path))


def test_tensor_split_rejects_bad_shapes():
    with pytest.raises(ValueError):
        TensorSplit(torch.zeros(4, 8, 8), torch.zeros(4), mean=(0.0,), std=(1.0,))
    split = TensorSplit(torch.zeros(5, 1, 4, 4), torch.arange(5), mean=(0.0,), std=(1.0,))
    assert len(TensorLoader(split, batch_size=2, shuffle=True)) == 2  # trailing single sample dropped
    assert len(TensorLoader(split, batch_size=2, shuffle=False)) == 3


def _write_fake_cifar100(root, rng):
    import pickle

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, per_class in (("train", 2), ("test", 1)):
        labels = [c for c in range(100) for _ in range(per_class)]
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        with open(folder / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels, "coarse_labels": [0] * len(labels)}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["x"]}, f)


def test_cifar100_format_env_default_resize_and_offline_download(tmp_path, monkeypatch):
    _write_fake_cifar100(tmp_path, np.random.default_rng(0))
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path))
    bundle = load_dataset("cifar100", download=True, image_size=16)  # files exist: nothing is fetched
    assert (bundle.num_classes, len(bundle.train), len(bundle.test), bundle.input_size) == (100, 200, 100, 16)
    assert bundle.train.images.shape[1:] == (3, 16, 16) and bundle.train.images.dtype == torch.uint8
    assert bundle.pad == 2 and bundle.flip
    train, val = make_loaders(bundle, batch_size=64, val_fraction=0.5, seed=0)
    assert (train.num_samples, val.num_samples) == (100, 100)
