"""The seeded labeled/validation/unlabeled split of any dataset, and resumable infinite samplers.

The datasets themselves are read by ``semisup.datasets`` (one loader per official format). Images stay uint8
``[N, 3, H, W]`` tensors for the whole run (150 MB for CIFAR-10; docs/datasets.md gives every dataset's) so that
augmentation can work on whole batches on the training device (see ``augment.py``) instead of one PIL image at a
time.
"""
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .config import ConfigError
from .datasets import Dataset, Source, concat, load_source, spec_of
from .datasets.cifar import CIFAR10_CLASSES, CIFAR10_FOLDER, download_cifar10, load_cifar10

__all__ = ["CIFAR10_CLASSES", "CIFAR10_FOLDER", "Dataset", "InfiniteSampler", "SSLData", "Split", "download_cifar10",
           "load_cifar10", "prepare_data", "split_fold", "split_indices"]

ALL_LABELS = 0  # --n-labeled 0: every training label


@dataclass
class Split:
    labeled: np.ndarray
    valid: np.ndarray
    unlabeled: np.ndarray


def split_indices(labels, n_labeled: int, n_valid: int, seed: int, num_classes: int = 10,
                  class_names: Sequence[str] = (), min_left: int = 1) -> Split:
    """Balanced labeled and validation sets chosen by ``seed``; unlabeled = every other training image.

    Uses numpy's legacy MT19937 ``RandomState``, whose stream is fixed across platforms and numpy versions, so
    the same seed picks the same images on any machine. Each class's permutation gives its labeled images first,
    so the labeled set depends on ``seed`` and ``n_labeled`` only (not on ``n_valid``), and smaller labeled sets
    are subsets of larger ones. Each class keeps ``min_left`` unlabeled images (0 where the dataset has other
    unlabeled images, as STL-10 at 5,000 labels, which labels its whole training set).
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
        if len(idx) < per_lb + per_valid + min_left:
            name = class_names[c] if class_names else c
            raise ConfigError(f"class {name} has {len(idx)} training images: too few for {per_lb} labeled and "
                              f"{per_valid} validation images per class (lower --n-labeled or --n-valid)")
        idx = rng.permutation(idx)
        labeled.append(idx[:per_lb])
        valid.append(idx[per_lb:per_lb + per_valid])
    labeled, valid = np.sort(np.concatenate(labeled)), np.sort(np.concatenate(valid))
    taken = np.zeros(len(labels), dtype=bool)
    taken[labeled] = taken[valid] = True
    return Split(labeled=labeled, valid=valid, unlabeled=np.flatnonzero(~taken))


def split_fold(labels, fold, n_valid: int, seed: int, num_classes: int, class_names: Sequence[str] = ()) -> Split:
    """An official fold as the labeled set (STL-10); validation images, balanced and chosen by ``seed``, come out
    of the images the fold leaves, and the rest of those are unlabeled."""
    labels = np.asarray(labels)
    rest = np.setdiff1d(np.arange(len(labels)), fold)
    inner = split_indices(labels[rest], 0, n_valid, seed, num_classes, class_names, min_left=0)
    return Split(labeled=np.sort(np.asarray(fold)), valid=rest[inner.valid], unlabeled=rest[inner.unlabeled])


def every_label(labels, n_valid: int, seed: int, num_classes: int, class_names: Sequence[str] = ()) -> Split:
    """``--n-labeled 0``: every training image is labeled but the validation images (balanced, chosen by
    ``seed``); the classes need not be balanced (SVHN's are not), and no training image is left unlabeled."""
    inner = split_indices(labels, 0, n_valid, seed, num_classes, class_names, min_left=0)
    return Split(labeled=inner.unlabeled, valid=inner.valid, unlabeled=np.zeros(0, dtype=np.int64))


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
    split: Split  # indices into the labeled pool; ``unlabeled`` also holds the dataset's unlabeled-only images
    num_classes: int
    class_names: Tuple[str, ...] = ()
    image_size: int = 32
    pad: int = 4  # the dataset's augmentation: reflect padding before the random crop ...
    flip: bool = True  # ... and whether to mirror at random


def _fold_seed(source: Source, seed: int, n_labeled: int) -> np.ndarray:
    folds = source.folds
    if not 1 <= seed <= len(folds):
        raise ConfigError(f"--seed {seed} picks fold {seed} of fold_indices.txt for {n_labeled} labels, but it "
                          f"holds folds 1-{len(folds)}")
    return folds[seed - 1]


def make_split(source: Source, n_labeled: int, n_valid: int, seed: int) -> Split:
    """The run's split of the labeled pool, as the official code makes it.

    STL-10 at the fold size (1,000 labels) labels fold ``--seed``; otherwise the balanced seeded split. Where the
    dataset has images that never carry labels (STL-10's 100,000, a folder's unlabeled/), every image of the pool
    may be labeled (STL-10 at 5,000); otherwise each class keeps at least one unlabeled image.
    """
    train, names = source.train, source.class_names
    extra = source.unlabeled is not None and len(source.unlabeled) > 0
    if n_labeled == ALL_LABELS:
        return every_label(train.labels.numpy(), n_valid, seed, len(names), names)
    if source.folds and n_labeled == len(source.folds[0]):
        return split_fold(train.labels.numpy(), _fold_seed(source, seed, n_labeled), n_valid, seed, len(names),
                          names)
    if n_labeled + n_valid > len(train) or (n_labeled + n_valid == len(train) and not extra):
        bound = "at most" if extra else "smaller than"
        raise ConfigError(f"--n-labeled ({n_labeled}) + --n-valid ({n_valid}) must be {bound} the "
                          f"{len(train)} training images")
    return split_indices(train.labels.numpy(), n_labeled, n_valid, seed, len(names), names, min_left=0 if extra
                         else 1)


def prepare_data(data_dir: str, n_labeled: int, n_valid: int, seed: int, download: bool = False,
                 dataset: str = "cifar10", image_size: int = 0) -> SSLData:
    """Load ``dataset`` and cut it into labeled / unlabeled / validation sets (test set as given).

    The split is checked before anything is written: only then are the caches of a first decode saved and the
    loader's notes logged, so a refused command leaves the disk as it found it.
    """
    spec, source = spec_of(dataset), load_source(dataset, data_dir, download, image_size)
    split = make_split(source, n_labeled, n_valid, seed)
    for write in source.pending:
        write()
    for note in source.notes:
        print(note, file=sys.stderr)
    train = source.train
    unlabeled = train.subset(split.unlabeled)
    if source.unlabeled is not None and len(source.unlabeled):
        unlabeled = concat([unlabeled, source.unlabeled])
    return SSLData(labeled=train.subset(split.labeled), unlabeled=unlabeled, valid=train.subset(split.valid),
                   test=source.test, split=split, num_classes=len(source.class_names),
                   class_names=tuple(source.class_names), image_size=int(train.images.shape[-1]), pad=spec.pad,
                   flip=spec.flip)


def prepare_from_config(cfg, download: Optional[bool] = None, data_dir: str = "") -> SSLData:
    """``prepare_data`` with a run's configuration (its dataset, split and image size)."""
    return prepare_data(data_dir or cfg.data_dir, cfg.n_labeled, cfg.n_valid, cfg.seed,
                        cfg.download if download is None else download, cfg.dataset, cfg.image_size)
