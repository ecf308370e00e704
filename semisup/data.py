"""CIFAR-10 loading, the seeded labeled/validation/unlabeled split, and resumable infinite samplers.

Images stay uint8 ``[N, 3, 32, 32]`` tensors for the whole run (150 MB for CIFAR-10) so that augmentation can work
on whole batches on the training device (see ``augment.py``) instead of one PIL image at a time.
"""
import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from .config import ConfigError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)


@dataclass
class Dataset:
    images: torch.Tensor  # uint8 [N, 3, 32, 32]
    labels: torch.Tensor  # int64 [N]

    def __len__(self):
        return len(self.labels)

    def subset(self, idx) -> "Dataset":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Dataset(self.images[idx], self.labels[idx])

    def to(self, device) -> "Dataset":
        return Dataset(self.images.to(device), self.labels.to(device))


def _missing_message(folder: str) -> str:
    return (f"CIFAR-10 not found in {folder}/{CIFAR10_FOLDER}: rerun with --download to fetch it, "
            f"or put the official python-version batches (cifar-10-batches-py/) in {folder}")


def download_cifar10(data_dir: str) -> None:
    """Fetch and unpack the official archive through torchvision (needs a network)."""
    from torchvision.datasets import CIFAR10
    try:
        CIFAR10(data_dir, train=True, download=True)
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"could not download CIFAR-10 into {data_dir}: {err}") from None


# The only callables a CIFAR batch pickle may name: numpy's array and scalar rebuilders (numpy 1 and 2 spell
# their module differently). Anything else in a data file is refused instead of being called.
_NUMPY_GLOBALS = {"_reconstruct": np.ndarray.__reduce__(np.zeros(1))[0], "scalar": np.int64(0).__reduce__()[0],
                  "ndarray": np.ndarray, "dtype": np.dtype}
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays only: a pickle can name any function to call on load."""

    def find_class(self, module, name):
        if module in _NUMPY_MODULES and name in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[name]
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are allowed")


def _read_batch(path: str, num_classes: int):
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
        data, labels = np.asarray(entry["data"]), np.asarray(entry["labels"] if "labels" in entry
                                                                   else entry["fine_labels"])
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError,
            IndexError) as err:
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


def load_cifar10(data_dir: str, download: bool = False, num_classes: int = 10):
    """Return (train, test) Datasets from ``data_dir/cifar-10-batches-py``; one clear error if absent or bad."""
    folder = os.path.join(data_dir, CIFAR10_FOLDER)
    if download and not all(os.path.exists(os.path.join(folder, f)) for f in TRAIN_FILES + TEST_FILES):
        download_cifar10(data_dir)
    missing = [f for f in TRAIN_FILES + TEST_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise ConfigError(_missing_message(data_dir) + f" (missing: {', '.join(missing)})")

    def read(names):
        parts = [_read_batch(os.path.join(folder, n), num_classes) for n in names]
        images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        return Dataset(images, torch.from_numpy(np.concatenate([p[1] for p in parts])))

    return read(TRAIN_FILES), read(TEST_FILES)


@dataclass
class Split:
    labeled: np.ndarray
    valid: np.ndarray
    unlabeled: np.ndarray


def split_indices(labels, n_labeled: int, n_valid: int, seed: int, num_classes: int = 10) -> Split:
    """Balanced labeled and validation sets chosen by ``seed``; unlabeled = every other training image.

    Uses numpy's legacy MT19937 ``RandomState``, whose stream is fixed across platforms and numpy versions, so
    the same seed picks the same images on any machine. Each class's permutation gives its labeled images first,
    so the labeled set depends on ``seed`` and ``n_labeled`` only (not on ``n_valid``), and smaller labeled sets
    are subsets of larger ones.
    """
    labels = np.asarray(labels)
    if n_labeled % num_classes or n_valid % num_classes:
        raise ConfigError(f"--n-labeled ({n_labeled}) and --n-valid ({n_valid}) must be multiples of the "
                          f"number of classes ({num_classes})")
    per_lb, per_valid = n_labeled // num_classes, n_valid // num_classes
    rng = np.random.RandomState(seed)
    labeled, valid = [], []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_lb + per_valid + 1:
            raise ConfigError(f"class {c} has {len(idx)} training images: too few for {per_lb} labeled and "
                              f"{per_valid} validation images per class (lower --n-labeled or --n-valid)")
        idx = rng.permutation(idx)
        labeled.append(idx[:per_lb])
        valid.append(idx[per_lb:per_lb + per_valid])
    labeled, valid = np.sort(np.concatenate(labeled)), np.sort(np.concatenate(valid))
    taken = np.zeros(len(labels), dtype=bool)
    taken[labeled] = taken[valid] = True
    return Split(labeled=labeled, valid=valid, unlabeled=np.flatnonzero(~taken))


class InfiniteSampler:
    """Endless shuffled index batches; each epoch is a fresh permutation from (seed, rank, epoch).

    The position is two integers, so a resumed run continues with exactly the batches it would have drawn.
    Batches may span an epoch boundary, as with the official code's shuffle-repeat-batch pipeline.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0):
        if n < 1:
            raise ConfigError("cannot sample batches from an empty set of images")
        self.n, self.batch_size, self.seed, self.rank = n, batch_size, seed, rank
        self.epoch, self.cursor = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.rank) * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def next(self) -> torch.Tensor:
        out, need = [], self.batch_size
        while need:
            if self.cursor == self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            take = min(need, self.n - self.cursor)
            out.append(self._perm[self.cursor:self.cursor + take])
            self.cursor += take
            need -= take
        return out[0] if len(out) == 1 else torch.cat(out)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._perm = self._permutation(self.epoch)


@dataclass
class SSLData:
    labeled: Dataset
    unlabeled: Dataset
    valid: Dataset
    test: Dataset
    split: Split
    num_classes: int


def prepare_data(data_dir: str, n_labeled: int, n_valid: int, seed: int, download: bool = False,
                 num_classes: int = 10) -> SSLData:
    """Load CIFAR-10 and cut it into labeled / unlabeled / validation sets (test set as given)."""
    train, test = load_cifar10(data_dir, download, num_classes)
    if n_labeled + n_valid >= len(train):
        raise ConfigError(f"--n-labeled ({n_labeled}) + --n-valid ({n_valid}) must be smaller than the "
                          f"{len(train)} training images")
    split = split_indices(train.labels.numpy(), n_labeled, n_valid, seed, num_classes)
    return SSLData(labeled=train.subset(split.labeled), unlabeled=train.subset(split.unlabeled),
                   valid=train.subset(split.valid), test=test, split=split, num_classes=num_classes)
