"""The dataset registry: every dataset of the paper, and a folder of the researcher's own images.

Each entry says what the official code (google-research/mixmatch ``libml/data.py``) does with the dataset: its
classes, image size, augmentation (pad, flip) and where its images come from. The loaders live in one module per
format (cifar, svhn, stl10, folder) and are imported only when their dataset is asked for; they return a
``Source``: the labeled pool the split draws from, the test set, the images that never have labels (STL-10's
100,000, a folder's unlabeled/), the class names and, for STL-10, the official folds. This module imports nothing
from the rest of semisup, so the configuration can consult the registry before any data is read.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor is made, so the configuration reads the registry fast
    import torch

FOLDER_PREFIX = "folder:"
FOLDER_MIN_SIZE = 8  # the smallest images the network's 3x3 convolutions and reflect padding make sense on


@dataclass
class Dataset:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    labels: torch.Tensor  # int64 [N]; -1 for images that have no label

    def __len__(self):
        return len(self.labels)

    def subset(self, idx) -> "Dataset":
        import torch

        idx = torch.as_tensor(idx, dtype=torch.long)
        return Dataset(self.images[idx], self.labels[idx])

    def to(self, device) -> "Dataset":
        return Dataset(self.images.to(device), self.labels.to(device))


def concat(parts: Sequence[Dataset]) -> Dataset:
    """One Dataset holding ``parts`` in order (a single part is returned as it is, without a copy)."""
    if len(parts) == 1:
        return parts[0]
    import torch

    return Dataset(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


def unlabeled_dataset(images: torch.Tensor) -> Dataset:
    import torch

    return Dataset(images, torch.full((len(images),), -1, dtype=torch.int64))


@dataclass
class Source:
    """What a loader read: the labeled pool, the test set, the always-unlabeled images, class names, folds.

    ``pending`` holds the cache writes of a first decode and ``notes`` the lines to log; both wait until the
    split has been checked (``data.prepare_data``), so a refused command writes nothing, not even a cache.
    """
    train: Dataset
    test: Dataset
    class_names: Tuple[str, ...]
    unlabeled: Optional[Dataset] = None
    folds: Optional[List[np.ndarray]] = None
    pending: List[Callable[[], None]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str  # for messages: "CIFAR-10"
    num_classes: int  # 0: decided by the data (folders)
    image_size: int  # 0: decided by the data or --image-size (folders)
    pad: int  # reflect padding before the random crop
    flip: bool  # random horizontal flip
    loader: str  # "module:function" under semisup.datasets
    test_images: int  # the official test set's size (cost estimates)


DATASETS = {
    "cifar10": DatasetSpec("cifar10", "CIFAR-10", 10, 32, 4, True, "cifar:cifar10_source", 10000),
    "cifar100": DatasetSpec("cifar100", "CIFAR-100", 100, 32, 4, True, "cifar:load_cifar100", 10000),
    # Mirrored digits are other digits or none: the official SVHN augmentation is the shift alone.
    "svhn": DatasetSpec("svhn", "SVHN", 10, 32, 4, False, "svhn:load_svhn", 26032),
    "svhn-extra": DatasetSpec("svhn-extra", "SVHN+extra", 10, 32, 4, False, "svhn:load_svhn_extra", 26032),
    "stl10": DatasetSpec("stl10", "STL-10", 10, 96, 12, True, "stl10:load_stl10", 8000),
}
_FOLDER = DatasetSpec("folder", "image folder", 0, 0, 4, True, "folder:load_folder", 0)
CHOICES = (*DATASETS, "folder:PATH")


def is_folder(name: str) -> bool:
    return name.startswith(FOLDER_PREFIX)


def folder_path(name: str) -> str:
    return name[len(FOLDER_PREFIX):]


def known(name: str) -> bool:
    return name in DATASETS or (is_folder(name) and bool(folder_path(name)))


def spec_of(name: str) -> DatasetSpec:
    """The registry entry of ``--dataset NAME`` (one shared entry for every folder:PATH)."""
    if is_folder(name):
        return _FOLDER
    return DATASETS[name]


def tag(name: str) -> str:
    """The dataset's part of a default run folder name: ``cifar10``, or ``folder-<last path part>``."""
    if not is_folder(name):
        return name
    return "folder-" + (os.path.basename(os.path.normpath(folder_path(name))) or "root")


def default_n_valid(name: str, n_labeled: int) -> int:
    """Validation images when --n-valid is not given.

    5,000 (the official ``@N-5000``) where the training set is large; STL-10 takes its validation images out of
    the 5,000 labeled-train images that are not labeled, 1,000 of them (none are left at 5,000 labels); a folder
    of one's own images holds none by default (its test/ set is the measure).
    """
    if is_folder(name):
        return 0
    if name == "stl10":
        return 0 if n_labeled >= 5000 or n_labeled == 0 else 1000
    return 5000


def load_source(name: str, data_dir: str, download: bool = False, image_size: int = 0) -> Source:
    """Read ``--dataset NAME`` through its loader: ``loader(data_dir, download)``, or ``(path, image_size)``."""
    spec = spec_of(name)
    module, function = spec.loader.split(":")
    load = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    if is_folder(name):
        return load(folder_path(name), image_size)
    return load(data_dir, download)
