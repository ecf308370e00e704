"""SVHN from its official .mat files: ``svhn/train_32x32.mat``, ``test_32x32.mat`` and ``extra_32x32.mat``.

Each file holds ``X``, uint8 of shape [32, 32, 3, N] (height, width, channel, image), and ``y``, [N, 1] with the
digits 1..9 as themselves and 10 for the digit 0 (label 0 here, as torchvision does). ``svhn`` trains on the
73,257 train images; ``svhn-extra`` adds the 531,131 extra ones to the labeled pool (labels are drawn from train
and extra together, as the official ``svhn_noextra`` / ``svhn`` pair does). Decoding the extra file takes a while,
so every file is decoded once into ``<data>/.semisup-cache/svhn-<split>.pt``.
"""
import os

import numpy as np
import torch

from ..errors import ConfigError
from . import Dataset, Source, cache, concat
from .cifar import download_error, missing_message

FOLDER = "svhn"
FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
CLASSES = tuple(str(d) for d in range(10))


def decode_mat(path: str):
    """(images uint8 [N, 3, 32, 32], labels int64 [N] in 0..9) from one SVHN .mat file, or one clear error."""
    import scipy.io
    try:
        mat = scipy.io.loadmat(path)
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    except (OSError, ValueError, KeyError, TypeError, NotImplementedError) as err:
        raise ConfigError(f"malformed SVHN file {path}: {type(err).__name__}: {err}") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ConfigError(f"malformed SVHN file {path}: expected X as uint8 [32, 32, 3, N], got {x.dtype} "
                          f"{list(x.shape)}")
    if y.shape != (x.shape[3],) or (len(y) and (y.min() < 1 or y.max() > 10)):
        raise ConfigError(f"malformed SVHN file {path}: expected {x.shape[3]} labels in 1..10, got {y.size}"
                          + (f" in {y.min()}..{y.max()}" if y.size else ""))
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    return torch.from_numpy(images), torch.from_numpy((y % 10).astype(np.int64))


def _download(data_dir: str, folder: str, splits) -> None:
    from torchvision.datasets import SVHN
    for split in splits:
        try:
            SVHN(folder, split=split, download=True)
        except (OSError, RuntimeError) as err:
            raise download_error("SVHN", data_dir, err) from None


def _read(data_dir: str, split: str, pending: list) -> Dataset:
    path = os.path.join(data_dir, FOLDER, FILES[split])

    def decode():
        images, labels = decode_mat(path)
        return {"images": images, "labels": labels}, {}

    tensors, _ = cache.cached(cache.cache_path(data_dir, f"svhn-{split}"), cache.stamp([path]), decode,
                              lambda t: cache.check(t, "images", "labels", (32, 32)), pending)
    return Dataset(tensors["images"], tensors["labels"])


def _load(data_dir: str, download: bool, splits) -> Source:
    folder = os.path.join(data_dir, FOLDER)
    absent = [s for s in splits if not os.path.isfile(os.path.join(folder, FILES[s]))]
    if download and absent:
        _download(data_dir, folder, absent)
        absent = [s for s in splits if not os.path.isfile(os.path.join(folder, FILES[s]))]
    if absent:
        title = "SVHN+extra" if "extra" in splits else "SVHN"
        raise ConfigError(missing_message(title, folder, ".mat files", [FILES[s] for s in absent]))
    pending: list = []
    parts = {s: _read(data_dir, s, pending) for s in splits}
    train = concat([parts[s] for s in splits if s != "test"])
    return Source(train, parts["test"], CLASSES, pending=pending)


def load_svhn(data_dir: str, download: bool = False) -> Source:
    return _load(data_dir, download, ("train", "test"))


def load_svhn_extra(data_dir: str, download: bool = False) -> Source:
    """SVHN with the extra images in the labeled pool: train (73,257) then extra (531,131), 604,388 in all."""
    return _load(data_dir, download, ("train", "extra", "test"))
