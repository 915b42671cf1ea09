"""Data sets for proxy training and their loaders.

``load_dataset(name, ...) -> DataBundle``; ``make_loaders(bundle, ...)`` splits a stratified,
seeded validation set off the *training* split (the test split is never touched during search);
``make_test_loader(bundle, ...)`` reads the test split.

Data sets:

- ``digits`` — scikit-learn's bundled UCI handwritten digits (1,797 8×8 grey images, 10 classes,
  offline). Pixels 0..16 are scaled to 0..1 and upsampled bilinearly to 16×16 by default: at 8×8
  a CIFAR-style network (strides 1/2/2) would end on 2×2 maps and a ±1-pixel shift would already
  move the digit by 12%; at 16×16 the last stage sees 4×4 maps and the ±2-pixel shift
  augmentation is the same 1/8 of the side as CIFAR's ±4 at 32. There is no official test split, so
  a stratified 20% test split is carved with seed 0 whatever ``seed`` says (the same test set for
  every run). Augmentation: random shift (zero pad 2 + random 16×16 crop), no flip (digits are
  not mirror-symmetric).
- ``cifar10``/``cifar100`` — torchvision's on-disk format under ``data_dir`` (``NAS_DATA_DIR`` by
  default). The md5 checks are skipped so that re-written copies such as the shared CIFAR-10
  subset load. Augmentation: zero pad 4 + random 32×32 crop, horizontal flip (He et al. 2016).
- ``imagefolder`` — ``data_dir/train`` and ``data_dir/val`` (or ``data_dir/test``) folders of class
  sub-folders. Train: RandomResizedCrop + flip; eval: resize to size/0.875 then centre crop
  (timm's default crop fraction), ImageNet mean/std. Training batches come from a ``DataLoader`` over
  :class:`train.seeding.SeededAugment` keyed by :class:`train.seeding.EpochSampler`: sample i of
  epoch e is augmented with the global RNGs seeded from ``(seed, e, i)``, so the batches depend on
  neither the number of workers, nor the process that loads them, nor what ran before (an
  interrupted run resumes exactly).

In-memory data sets (digits, CIFAR) are served by :class:`TensorLoader`: the whole split lives in
one uint8/float tensor, augmentation is vectorised per batch and seeded by a ``torch.Generator``;
no PIL and no worker processes.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from space.registry import Registry

from .checks import check_positive_int
from .config_base import literal
from .seeding import EpochSampler, SeededAugment, epoch_seed

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 0.875
DIGITS_TEST_FRACTION, DIGITS_TEST_SEED = 0.2, 0


class TensorSplit(Dataset):
    """A split held in memory: ``images`` N×C×H×W (uint8 0..255 or float 0..1), ``labels`` int64 N.

    Indexing returns one normalised float image and its label (no augmentation); batches come
    faster from :class:`TensorLoader`.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"images must be N×C×H×W and labels N, got {tuple(images.shape)} and "
                             f"{tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.normalise(to_unit_float(self.images[i:i + 1]))[0], int(self.labels[i])

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.sub_(self.mean).div_(self.std)


@dataclass
class DataBundle:
    """One data set: its shape facts, normalisation, both splits and its training augmentation.

    ``pad``/``flip`` are the in-memory augmentation (random crop after zero padding by ``pad``;
    horizontal flip); ``train_transform`` is the augmenting transform of a file-backed data set
    (whose ``train``/``test`` datasets carry the eval transform).
    """

    name: str
    num_classes: int
    in_chans: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Dataset
    test: Dataset
    pad: int = 0
    flip: bool = False
    train_transform: Any = None

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, TensorSplit)


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 → float 0..1 (a new tensor); float tensors are copied as float32."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)


def random_crop_flip(x: torch.Tensor, *, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop of a zero-padded batch plus random horizontal flip, vectorised.

    ``x`` is B×C×H×W; every sample gets its own offsets in [0, 2·pad] and (if ``flip``) a fair coin
    for mirroring. One gather: no Python loop over images.
    """
    b, c, h, w = x.shape
    if pad > 0:
        x = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    else:
        oy = ox = torch.zeros(b, dtype=torch.long)
    rows = oy[:, None] + torch.arange(h)
    cols = ox[:, None] + torch.arange(w)
    if flip:
        mirrored = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    return x[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]


class TensorLoader:
    """Iterates an in-memory split like a ``DataLoader``: ``len()`` batches of ``(x, y)``.

    Epoch ``e`` (counted by ``__iter__``; settable with :meth:`set_epoch`) draws its order and
    augmentation from a generator seeded by ``(seed, e)``, so every epoch is reshuffled and the
    whole sequence is a pure function of the seed. A trailing batch of one sample is dropped when
    shuffling (BatchNorm cannot train on a single sample).
    """

    def __init__(self, split: TensorSplit, indices: torch.Tensor | None = None, *, batch_size: int,
                 shuffle: bool, seed: int = 0, pad: int = 0, flip: bool = False) -> None:
        self.split = split
        self.indices = torch.arange(len(split)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.shuffle, self.seed, self.pad, self.flip = shuffle, seed, pad, flip
        self.epoch = 0
        n = len(self.indices)
        self.num_samples = n - 1 if shuffle and n > 1 and n % self.batch_size == 1 else n

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        order = self.indices[torch.randperm(len(self.indices), generator=gen)] if self.shuffle else self.indices
        order = order[:self.num_samples]
        augment = self.pad > 0 or self.flip
        for start in range(0, self.num_samples, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = to_unit_float(self.split.images[idx])
            if augment:
                x = random_crop_flip(x, pad=self.pad, flip=self.flip, generator=gen)
            yield self.split.normalise(x), self.split.labels[idx]


# --------------------------------------------------------------------------- splits


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Integer labels of a split (``TensorSplit.labels`` or a torchvision ``targets`` list)."""
    if isinstance(dataset, TensorSplit):
        return dataset.labels.numpy()
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise ValueError(f"cannot stratify {type(dataset).__name__}: it has no `targets` labels")
    return np.asarray(targets, dtype=np.int64)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held-out) with ``round(fraction·n_c)`` held out of each class c.

    Seeded by a ``torch.Generator``; both index arrays are returned sorted.
    """
    gen = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[torch.randperm(len(idx), generator=gen).numpy()]
        n_held = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if fraction > 0 else 0
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


# --------------------------------------------------------------------------- data sets


def _digits_file() -> Path:
    """The file scikit-learn's ``load_digits`` reads (rows of 64 pixel values 0–16 and the label), found without
    importing scikit-learn: its import (with SciPy's) costs ~1 s in every trial process that loads the data."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("data.name: digits needs scikit-learn installed (it ships the data set)")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def _digits(*, data_dir: str | None, download: bool, image_size: int | None) -> DataBundle:
    size = 16 if image_size is None else image_size
    raw = np.loadtxt(_digits_file(), delimiter=",")  # what load_digits() parses, in the same order
    x = torch.tensor(raw[:, :-1].reshape(-1, 1, 8, 8), dtype=torch.float32) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    y = torch.tensor(raw[:, -1].astype(np.int64), dtype=torch.long)
    train_idx, test_idx = stratified_split(y.numpy(), DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    x_train = x[train_idx]
    mean, std = (float(x_train.mean()),), (float(x_train.std()),)
    return DataBundle("digits", 10, 1, size, mean, std,
                      TensorSplit(x_train, y[train_idx], mean=mean, std=std),
                      TensorSplit(x[test_idx], y[test_idx], mean=mean, std=std),
                      pad=max(1, size // 8), flip=False)


def _resolve_data_dir(data_dir: str | None, name: str) -> Path:
    root = data_dir if data_dir is not None else os.environ.get("NAS_DATA_DIR")
    if not root:
        raise ValueError(f"data.data_dir: {name} needs a data directory; set data.data_dir or the "
                         f"NAS_DATA_DIR environment variable")
    return Path(root).expanduser()


def _local_cifar(base: type) -> type:
    """``base`` (CIFAR10/CIFAR100) with every md5 entry ``None``: files are only checked to exist."""
    return type(f"Local{base.__name__}", (base,), {
        "train_list": [[f, None] for f, _ in base.train_list],
        "test_list": [[f, None] for f, _ in base.test_list],
        "meta": {**base.meta, "md5": None},
    })


def _resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    out = []
    for chunk in x.split(2048):
        r = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(r.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _cifar(name: str, *, data_dir: str | None, download: bool, image_size: int | None) -> DataBundle:
    from torchvision.datasets import CIFAR10, CIFAR100

    base, classes = (CIFAR10, 10) if name == "cifar10" else (CIFAR100, 100)
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    root = _resolve_data_dir(data_dir, name)
    if not download and not (root / base.base_folder).is_dir():
        raise ValueError(f"data.data_dir: {name} not found: no {base.base_folder}/ under {str(root)!r}; "
                         f"point data.data_dir (or NAS_DATA_DIR) at the folder holding it, or pass download=True")
    cls = _local_cifar(base)
    try:
        splits = [cls(str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as exc:
        raise ValueError(f"data.data_dir: {name} under {str(root)!r} is incomplete or unreadable ({exc})") from None
    size = 32 if image_size is None else image_size
    tensors = []
    for ds in splits:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        tensors.append((x if size == 32 else _resize_uint8(x, size), torch.tensor(ds.targets, dtype=torch.long)))
    (xtr, ytr), (xte, yte) = tensors
    return DataBundle(name, classes, 3, size, mean, std, TensorSplit(xtr, ytr, mean=mean, std=std),
                      TensorSplit(xte, yte, mean=mean, std=std), pad=max(1, size // 8), flip=True)


def _imagefolder(*, data_dir: str | None, download: bool, image_size: int | None) -> DataBundle:
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    if download:
        raise ValueError("data.download: an imagefolder data set cannot be downloaded; set download=False")
    root = _resolve_data_dir(data_dir, "imagefolder")
    train_dir = root / "train"
    test_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise ValueError(f"data.data_dir: imagefolder needs {str(root)!r} to hold train/ and val/ (or test/) "
                         f"folders of class sub-folders")
    size = 224 if image_size is None else image_size
    norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    eval_tf = T.Compose([T.Resize(round(size / EVAL_CROP_FRACTION)), T.CenterCrop(size), *norm])
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *norm])
    train, test = ImageFolder(str(train_dir), transform=eval_tf), ImageFolder(str(test_dir), transform=eval_tf)
    if train.classes != test.classes:
        raise ValueError(f"data.data_dir: class folders differ between {train_dir.name}/ ({train.classes}) "
                         f"and {test_dir.name}/ ({test.classes})")
    return DataBundle("imagefolder", len(train.classes), 3, size, IMAGENET_MEAN, IMAGENET_STD, train, test,
                      train_transform=train_tf)


DATASETS: Registry[Any] = Registry("data set")
DATASETS.register("digits", _digits, doc="scikit-learn's 8×8 digits upsampled to 16×16; offline")
DATASETS.register("cifar10", lambda **kw: _cifar("cifar10", **kw), doc="CIFAR-10 in torchvision's format")
DATASETS.register("cifar100", lambda **kw: _cifar("cifar100", **kw), doc="CIFAR-100 in torchvision's format")
DATASETS.register("imagefolder", _imagefolder, doc="train/ and val/ (or test/) ImageFolder directories")
DataSetName = literal(DATASETS.names())
"""The registered data set names as a ``Literal`` (config fields and ``--data`` choices come from it)."""


def load_dataset(name: str, *, data_dir: str | None = None, download: bool = False, seed: int = 0,
                 image_size: int | None = None) -> DataBundle:
    """Load the data set ``name`` (digits, cifar10, cifar100, imagefolder) as a :class:`DataBundle`.

    ``seed`` is accepted for a uniform signature; no data set here draws anything at load time
    (the digits test split is fixed with seed 0 on purpose; validation splits are drawn by
    :func:`make_loaders`). ``image_size`` resizes (default: the data set's own size; 224 for
    imagefolder).
    """
    try:
        factory = DATASETS.get(name)
    except ValueError as exc:
        raise ValueError(f"data.name: {exc}") from None
    if image_size is not None:
        check_positive_int(image_size, "data.image_size", minimum=4)
    return factory(data_dir=data_dir, download=download, image_size=image_size)


def make_loaders(bundle: DataBundle, *, batch_size: int, val_fraction: float, seed: int, augment: bool = True,
                 num_workers: int = 0) -> tuple[Any, Any]:
    """(train, val) loaders over a stratified, seeded split of the *training* set.

    ``val_fraction`` of each class goes to validation (un-augmented, not shuffled); ``0`` gives no
    validation loader (``None``), e.g. for a final retraining on the whole training split.
    ``num_workers`` only applies to file-backed data sets; their batches do not depend on it.
    """
    check_positive_int(batch_size, "batch_size")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: must be a number in [0, 1), got {val_fraction!r}")
    train_idx, val_idx = stratified_split(dataset_labels(bundle.train), float(val_fraction), seed)
    if bundle.in_memory:
        pad, flip = (bundle.pad, bundle.flip) if augment else (0, False)
        train = TensorLoader(bundle.train, torch.from_numpy(train_idx), batch_size=batch_size, shuffle=True,
                             seed=seed, pad=pad, flip=flip)
        val = (TensorLoader(bundle.train, torch.from_numpy(val_idx), batch_size=batch_size, shuffle=False)
               if len(val_idx) else None)
        return train, val
    transform = bundle.train_transform if augment and bundle.train_transform is not None else bundle.train.transform
    train = DataLoader(SeededAugment(bundle.train, transform, seed=seed), batch_size=batch_size,
                       sampler=EpochSampler(train_idx.tolist(), seed=seed), num_workers=num_workers,
                       drop_last=len(train_idx) % batch_size == 1, generator=torch.Generator().manual_seed(seed))
    val = (DataLoader(Subset(bundle.train, val_idx.tolist()), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers) if len(val_idx) else None)
    return train, val


def make_test_loader(bundle: DataBundle, *, batch_size: int, num_workers: int = 0) -> Any:
    """Loader over the test split: un-augmented, in order. Use only for final numbers, never in search."""
    check_positive_int(batch_size, "batch_size")
    if bundle.in_memory:
        return TensorLoader(bundle.test, batch_size=batch_size, shuffle=False)
    return DataLoader(bundle.test, batch_size=batch_size, shuffle=False, num_workers=num_workers)
