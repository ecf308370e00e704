"""CIFAR-10 and CIFAR-100 in their official python-pickle form, read through an allow-list unpickler.

CIFAR-10: ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5``, ``test_batch`` (``labels``). CIFAR-100:
``cifar-100-python/train``, ``test`` (``fine_labels``, the 100 classes the paper uses) and ``meta`` (the class
names). Both decode in about a second, so they need no cache.
"""
import os
import pickle

import numpy as np
import torch

from ..errors import ConfigError
from . import Dataset, Source

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = ("train", "test", "meta")


def missing_message(title: str, folder: str, what: str, missing) -> str:
    """The one line for absent files: the folder, what to put there, both fixes, and what is missing."""
    parent, name = os.path.split(folder.rstrip("/"))
    return (f"{title} not found in {folder}: rerun with --download to fetch it, or put the official {what} "
            f"({name}/) in {parent or '.'} (missing: {', '.join(missing)})")


def download_error(title: str, data_dir: str, err: Exception) -> ConfigError:
    return ConfigError(f"could not download {title} into {data_dir}: {err}")


# The only callables a CIFAR batch pickle may name: numpy's array and scalar rebuilders (numpy 1 and 2 spell
# their module differently). Anything else in a data file is refused instead of being called.
_NUMPY_GLOBALS = {"_reconstruct": np.ndarray.__reduce__(np.zeros(1))[0], "scalar": np.int64(0).__reduce__()[0],
                  "ndarray": np.ndarray, "dtype": np.dtype}
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes at pickle protocol 2 (``encode(text, 'latin1')``): only that
    encoding is accepted, so a pickle cannot make the loader look up (and import) another codec."""
    if encoding.lower().replace("-", "").replace("_", "") != "latin1":
        raise pickle.UnpicklingError(f"refused to load _codecs.encode with encoding {encoding!r}: only the latin1 "
                                     f"bytes of pickle protocol 2 are allowed")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, bytes and numpy arrays only: a pickle can name any function to call on
    load. Python 3's pickle protocol 2 (a common way to write a subset in the official layout) stores bytes through
    ``_codecs.encode``, which torchvision's loader and torch's weights-only unpickler accept too; it is allowed for
    the latin1 encoding alone."""

    def find_class(self, module, name):
        if module in _NUMPY_MODULES and name in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[name]
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are allowed")


_PICKLE_ERRORS = (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError,
                  IndexError)


def _unpickle(path: str) -> dict:
    with open(path, "rb") as f:
        return _ArrayUnpickler(f, encoding="latin1").load()


def _read_batch(path: str, num_classes: int):
    try:
        entry = _unpickle(path)
        data, labels = np.asarray(entry["data"]), np.asarray(entry["labels"] if "labels" in entry
                                                               else entry["fine_labels"])
    except _PICKLE_ERRORS as err:
        raise ConfigError(f"malformed CIFAR batch file {path}: {type(err).__name__}: {err}") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ConfigError(f"malformed CIFAR batch file {path}: expected uint8 images of shape [N, 3072], "
                          f"got {data.dtype} {list(data.shape)}")
    if labels.shape != (len(data),):
        raise ConfigError(f"malformed CIFAR batch file {path}: {labels.size} labels for {len(data)} images")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"malformed CIFAR batch file {path}: labels must be integers, got {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"malformed CIFAR batch file {path}: labels must lie in [0, {num_classes - 1}], "
                          f"found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read(folder: str, names, num_classes: int) -> Dataset:
    parts = [_read_batch(os.path.join(folder, n), num_classes) for n in names]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    return Dataset(images, torch.from_numpy(np.concatenate([p[1] for p in parts])))


def _fetch(title: str, cls_name: str, data_dir: str) -> None:
    """Fetch and unpack the official archive through torchvision (needs a network)."""
    import torchvision.datasets
    try:
        getattr(torchvision.datasets, cls_name)(data_dir, train=True, download=True)
    except (OSError, RuntimeError) as err:
        raise download_error(title, data_dir, err) from None


def download_cifar10(data_dir: str) -> None:
    _fetch("CIFAR-10", "CIFAR10", data_dir)


def _missing(folder: str, names):
    return [f for f in names if not os.path.isfile(os.path.join(folder, f))]


def load_cifar10(data_dir: str, download: bool = False, num_classes: int = 10):
    """Return (train, test) Datasets from ``data_dir/cifar-10-batches-py``; one clear error if absent or bad."""
    folder = os.path.join(data_dir, CIFAR10_FOLDER)
    if download and _missing(folder, TRAIN_FILES + TEST_FILES):
        download_cifar10(data_dir)
    missing = _missing(folder, TRAIN_FILES + TEST_FILES)
    if missing:
        raise ConfigError(f"CIFAR-10 not found in {data_dir}/{CIFAR10_FOLDER}: rerun with --download to fetch it, "
                          f"or put the official python-version batches (cifar-10-batches-py/) in {data_dir} "
                          f"(missing: {', '.join(missing)})")
    return _read(folder, TRAIN_FILES, num_classes), _read(folder, TEST_FILES, num_classes)


def cifar10_source(data_dir: str, download: bool = False) -> Source:
    train, test = load_cifar10(data_dir, download)
    return Source(train, test, CIFAR10_CLASSES)


def _class_names_100(path: str):
    try:
        names = [str(n) for n in _unpickle(path)["fine_label_names"]]
    except _PICKLE_ERRORS as err:
        raise ConfigError(f"malformed CIFAR batch file {path}: {type(err).__name__}: {err}") from None
    if len(names) != 100:
        raise ConfigError(f"malformed CIFAR batch file {path}: expected 100 fine_label_names, got {len(names)}")
    return tuple(names)


def load_cifar100(data_dir: str, download: bool = False) -> Source:
    """CIFAR-100 from ``data_dir/cifar-100-python`` (train, test, meta), with its 100 fine labels."""
    folder = os.path.join(data_dir, CIFAR100_FOLDER)
    if download and _missing(folder, CIFAR100_FILES):
        _fetch("CIFAR-100", "CIFAR100", data_dir)
    missing = _missing(folder, CIFAR100_FILES)
    if missing:
        raise ConfigError(missing_message("CIFAR-100", folder, "python-version files", missing))
    names = _class_names_100(os.path.join(folder, "meta"))
    return Source(_read(folder, ("train",), 100), _read(folder, ("test",), 100), names)
