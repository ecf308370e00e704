"""STL-10 from its official binaries in ``stl10_binary/``.

``train_X.bin`` / ``test_X.bin`` / ``unlabeled_X.bin`` hold uint8 images of 3x96x96, each channel stored column by
column (the MATLAB order: torchvision transposes them the same way); ``train_y.bin`` / ``test_y.bin`` one byte per
label, 1..10; ``fold_indices.txt`` ten lines, line k the 0-based indices of the labeled-train images of fold k
(1,000 each); ``class_names.txt`` one name per line. The 105,000 96x96 images are decoded once into
``<data>/.semisup-cache/stl10-<split>.pt``.
"""
import os

import numpy as np
import torch

from ..errors import ConfigError
from . import Dataset, Source, cache, unlabeled_dataset
from .cifar import download_error, missing_message

FOLDER = "stl10_binary"
SIZE = 96
IMAGE_BYTES = 3 * SIZE * SIZE
SPLITS = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin"),
          "unlabeled": ("unlabeled_X.bin", None)}
TEXT_FILES = ("fold_indices.txt", "class_names.txt")


def decode_images(path: str) -> torch.Tensor:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % IMAGE_BYTES:
        raise ConfigError(f"malformed STL-10 file {path}: {raw.size} bytes is not a whole number of "
                          f"3x96x96 images ({IMAGE_BYTES} bytes each)")
    return torch.from_numpy(np.ascontiguousarray(raw.reshape(-1, 3, SIZE, SIZE).transpose(0, 1, 3, 2)))


def decode_labels(path: str, n: int) -> torch.Tensor:
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if y.shape != (n,) or (n and (y.min() < 1 or y.max() > 10)):
        raise ConfigError(f"malformed STL-10 file {path}: expected {n} labels in 1..10, got {y.size}"
                          + (f" in {y.min()}..{y.max()}" if y.size else ""))
    return torch.from_numpy(y - 1)


def read_folds(path: str, n_train: int):
    """The official folds: one line per fold, 0-based indices into the labeled-train images."""
    try:
        with open(path) as f:
            folds = [np.array([int(t) for t in line.split()], dtype=np.int64) for line in f if line.strip()]
    except (OSError, ValueError) as err:
        raise ConfigError(f"malformed STL-10 file {path}: {type(err).__name__}: {err}") from None
    bad = [k + 1 for k, fold in enumerate(folds) if len(fold) == 0 or fold.min() < 0 or fold.max() >= n_train
           or len(np.unique(fold)) != len(fold)]
    if not folds or bad:
        raise ConfigError(f"malformed STL-10 file {path}: every line must hold distinct indices in "
                          f"[0, {n_train - 1}] (fold {bad[0] if bad else 1} does not)")
    return folds


def read_class_names(path: str):
    with open(path) as f:
        names = tuple(line.strip() for line in f if line.strip())
    if len(names) != 10:
        raise ConfigError(f"malformed STL-10 file {path}: expected 10 class names, got {len(names)}")
    return names


def _read(data_dir: str, split: str, pending: list) -> Dataset:
    x_name, y_name = SPLITS[split]
    folder = os.path.join(data_dir, FOLDER)
    paths = [os.path.join(folder, n) for n in (x_name, y_name) if n]

    def decode():
        images = decode_images(paths[0])
        tensors = {"images": images}
        if y_name:
            tensors["labels"] = decode_labels(paths[1], len(images))
        return tensors, {}

    def valid(t):
        return cache.check(t, "images", "labels", (SIZE, SIZE)) if y_name else (
            "images" in t and t["images"].dtype == torch.uint8 and tuple(t["images"].shape[1:]) == (3, SIZE, SIZE))

    tensors, _ = cache.cached(cache.cache_path(data_dir, f"stl10-{split}"), cache.stamp(paths), decode, valid,
                              pending)
    return Dataset(tensors["images"], tensors["labels"]) if y_name else unlabeled_dataset(tensors["images"])


def _download(data_dir: str) -> None:
    from torchvision.datasets import STL10
    try:
        STL10(data_dir, split="train", download=True)  # fetches and unpacks the whole archive, unlabeled included
    except (OSError, RuntimeError) as err:
        raise download_error("STL-10", data_dir, err) from None


def _missing(folder: str):
    names = [n for pair in SPLITS.values() for n in pair if n] + list(TEXT_FILES)
    return [n for n in names if not os.path.isfile(os.path.join(folder, n))]


def load_stl10(data_dir: str, download: bool = False) -> Source:
    """The 5,000 labeled-train images (the pool), the 8,000 test images, the 100,000 unlabeled ones, the folds."""
    folder = os.path.join(data_dir, FOLDER)
    if download and _missing(folder):
        _download(data_dir)
    missing = _missing(folder)
    if missing:
        raise ConfigError(missing_message("STL-10", folder, "binary files", missing))
    pending: list = []
    train, test = _read(data_dir, "train", pending), _read(data_dir, "test", pending)
    unlabeled = _read(data_dir, "unlabeled", pending)
    folds = read_folds(os.path.join(folder, "fold_indices.txt"), len(train))
    names = read_class_names(os.path.join(folder, "class_names.txt"))
    return Source(train, test, names, unlabeled=unlabeled, folds=folds, pending=pending)
