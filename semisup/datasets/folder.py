"""A folder of one's own images: ``PATH/train/<class>/*``, optional ``PATH/unlabeled/**``, ``PATH/test/<class>/*``.

train/ is the labeled pool (the split draws the labeled and validation images from it, the rest are unlabeled),
unlabeled/ (searched recursively) adds images without labels, test/ is the test set. The class names are the
sorted folder names of train/; test/ may hold fewer classes, never others. PNG and JPEG files are read (by their
extension) with Pillow and converted to RGB; other files are left alone. Every image becomes an S x S square:
S is --image-size, or else the most common image size (its shorter side when it is not square); images of
another size are resized (bilinear, not cropped). The decoded images are cached in
``PATH/.semisup-cache/folder-<S or auto>.pt``, stamped with every file's name, size and modification time.
"""
import os
from collections import Counter
from typing import Dict, List, Tuple

import numpy as np
import torch

from ..errors import ConfigError
from . import FOLDER_MIN_SIZE, Dataset, Source, cache, unlabeled_dataset

EXTENSIONS = (".png", ".jpg", ".jpeg")
LAYOUT = "PATH/train/<class>/*, optionally PATH/unlabeled/**, and PATH/test/<class>/*"


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(EXTENSIONS)


def _files(folder: str, recursive: bool = False) -> List[str]:
    if not recursive:
        return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                      if _is_image(n) and os.path.isfile(os.path.join(folder, n)))
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, n) for n in sorted(names) if _is_image(n)]
    return found


def _class_folders(folder: str) -> List[str]:
    return sorted(n for n in os.listdir(folder) if not n.startswith(".") and os.path.isdir(os.path.join(folder, n)))


def scan(path: str) -> Tuple[Dict[str, List[str]], List[str], Dict[str, List[str]]]:
    """(train files by class, unlabeled files, test files by class), or one line naming what is wrong."""
    if not os.path.isdir(path):
        raise ConfigError(f"--dataset folder:{path}: no such folder (expected {LAYOUT})")
    for part in ("train", "test"):
        if not os.path.isdir(os.path.join(path, part)):
            raise ConfigError(f"folder dataset {path} has no {part}/ folder (expected {LAYOUT})")
    classes = _class_folders(os.path.join(path, "train"))
    if len(classes) < 2:
        raise ConfigError(f"folder dataset {path}/train needs at least two class folders, found {len(classes)}"
                          + (f": {classes[0]}" if classes else ""))
    train = {c: _files(os.path.join(path, "train", c)) for c in classes}
    test = {c: _files(os.path.join(path, "test", c)) for c in _class_folders(os.path.join(path, "test"))}
    for c in test:
        if c not in train:
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise ConfigError(f"{path}/test/{c} is a class that {path}/train does not have (train classes: {shown})")
    for part, files in (("train", train), ("test", test)):
        for c, names in files.items():
            if not names:
                raise ConfigError(f"class folder {path}/{part}/{c} holds no PNG or JPEG images")
    ulb_dir = os.path.join(path, "unlabeled")
    return train, (_files(ulb_dir, recursive=True) if os.path.isdir(ulb_dir) else []), test


def _open(path: str):
    from PIL import Image, UnidentifiedImageError
    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ConfigError(f"cannot read image {path}: {err}") from None


def image_side(sizes: Counter, image_size: int) -> Tuple[int, str]:
    """(S, what to log): --image-size, or the most common (width, height), its shorter side if not square."""
    (w, h), _ = sizes.most_common(1)[0]
    side = image_size or min(w, h)
    other = sum(n for s, n in sizes.items() if s != (side, side))
    how = f"--image-size {side}" if image_size else f"most common size {w}x{h}"
    return side, f"{how}; {other} image{'s' * (other != 1)} of other sizes resized to {side}x{side}"


def decode(paths: List[str], side: int) -> torch.Tensor:
    """uint8 [N, 3, side, side] from image files: RGB, resized (bilinear) where their size differs."""
    from PIL import Image
    out = np.empty((len(paths), 3, side, side), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with _open(path) as im:
                rgb = im.convert("RGB")
        except OSError as err:  # a header that reads but pixels that do not (a truncated file)
            raise ConfigError(f"cannot read image {path}: {err}") from None
        if rgb.size != (side, side):
            rgb = rgb.resize((side, side), Image.BILINEAR)
        out[i] = np.asarray(rgb).transpose(2, 0, 1)
    return torch.from_numpy(out)


def _labeled(files: Dict[str, List[str]], classes: List[str]) -> Tuple[List[str], torch.Tensor]:
    paths = [p for c in files for p in files[c]]
    labels = [classes.index(c) for c in files for _ in files[c]]
    return paths, torch.tensor(labels, dtype=torch.int64)


def _decode_all(path, train_paths, ulb_paths, test_paths, image_size):
    def run():
        sizes = Counter()
        for p in (*train_paths, *ulb_paths, *test_paths):
            with _open(p) as im:
                sizes[im.size] += 1
        side, how = image_side(sizes, image_size)
        if side < FOLDER_MIN_SIZE:
            raise ConfigError(f"folder dataset {path}: images of {side}x{side} are too small; pass --image-size "
                              f"{FOLDER_MIN_SIZE} or more")
        tensors = {"train": decode(train_paths, side), "unlabeled": decode(ulb_paths, side),
                   "test": decode(test_paths, side)}
        return tensors, {"how": how}
    return run


def load_folder(path: str, image_size: int = 0) -> Source:
    train_files, ulb_paths, test_files = scan(path)
    classes = list(train_files)
    train_paths, train_labels = _labeled(train_files, classes)
    test_paths, test_labels = _labeled(test_files, classes)
    every = [*train_paths, *ulb_paths, *test_paths]
    source_stamp = cache.stamp(every, root=path) + [["--image-size", image_size], ["classes", classes]]
    pending: list = []

    def valid(t):
        return (all(k in t and t[k].dtype == torch.uint8 and t[k].ndim == 4 for k in ("train", "unlabeled", "test"))
                and [len(t[k]) for k in ("train", "unlabeled", "test")] == [len(train_paths), len(ulb_paths),
                                                                            len(test_paths)])

    tensors, meta = cache.cached(cache.cache_path(path, f"folder-{image_size or 'auto'}"), source_stamp,
                                 _decode_all(path, train_paths, ulb_paths, test_paths, image_size), valid, pending)
    side = tensors["train"].shape[-1]
    note = (f"folder:{path}: {len(train_paths)} train images in {len(classes)} classes, {len(ulb_paths)} "
            f"unlabeled, {len(test_paths)} test; {meta.get('how', f'{side}x{side}')}")
    unlabeled = unlabeled_dataset(tensors["unlabeled"]) if ulb_paths else None
    return Source(Dataset(tensors["train"], train_labels), Dataset(tensors["test"], test_labels), tuple(classes),
                  unlabeled=unlabeled, pending=pending, notes=[note])
