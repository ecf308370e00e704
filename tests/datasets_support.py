"""Tiny datasets written in each official on-disk format: CIFAR-100 pickles, SVHN .mat, STL-10 binaries with a
fold file, and a folder of PNG and JPEG images. Each image's mean colour depends on its class, so a few steps can
learn something, and every array is small enough for a fast test."""
import os
import pickle

import numpy as np


def class_images(labels, shape, rng):
    """uint8 images of ``shape`` per label: a class-dependent grey level plus noise."""
    base = (np.asarray(labels) * 23 % 256).astype(np.int64).reshape(-1, *([1] * len(shape)))
    return np.clip(base + rng.randint(-40, 40, size=(len(labels), *shape)), 0, 255).astype(np.uint8)


def balanced_labels(n, num_classes, rng):
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    return labels


def write_fake_cifar100(folder, n_train=400, n_test=200, seed=0):
    """cifar-100-python/train, test and meta, with ``fine_labels`` (and coarse ones, as the real files)."""
    rng = np.random.RandomState(seed)
    out = os.path.join(folder, "cifar-100-python")
    os.makedirs(out, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = balanced_labels(n, 100, rng)
        entry = {"data": class_images(labels, (3072,), rng), "fine_labels": labels.tolist(),
                 "coarse_labels": (labels // 5).tolist(), "filenames": [f"{name}{i}.png" for i in range(n)]}
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump(entry, f)
    with open(os.path.join(out, "meta"), "wb") as f:
        pickle.dump({"fine_label_names": [f"fine{i:02d}" for i in range(100)],
                     "coarse_label_names": [f"coarse{i}" for i in range(20)]}, f)
    return folder


def svhn_mat(n, rng):
    """(X [32, 32, 3, n] uint8, y [n, 1] uint8 in 1..10) as in the official .mat files; returns labels 0..9 too."""
    labels = balanced_labels(n, 10, rng)
    images = class_images(labels, (3, 32, 32), rng)  # [n, 3, 32, 32]
    return {"X": images.transpose(2, 3, 1, 0).copy(), "y": np.where(labels == 0, 10, labels).astype(np.uint8)
            .reshape(-1, 1)}, images, labels


def write_fake_svhn(folder, n_train=200, n_test=60, n_extra=100, seed=0):
    import scipy.io
    rng = np.random.RandomState(seed)
    out = os.path.join(folder, "svhn")
    os.makedirs(out, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test), ("extra", n_extra)):
        mat, images, labels = svhn_mat(n, rng)
        scipy.io.savemat(os.path.join(out, f"{split}_32x32.mat"), mat)
        arrays[split] = (images, labels)
    return folder, arrays


def write_fake_stl10(folder, n_train=60, n_test=30, n_unlabeled=40, fold_size=10, n_folds=10, seed=0):
    """stl10_binary/ with column-major 3x96x96 images, labels 1..10, fold_indices.txt and class_names.txt."""
    rng = np.random.RandomState(seed)
    out = os.path.join(folder, "stl10_binary")
    os.makedirs(out, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        labels = balanced_labels(n, 10, rng)
        images = class_images(labels, (3, 96, 96), rng)
        images.transpose(0, 1, 3, 2).tofile(os.path.join(out, f"{split}_X.bin"))  # each channel column by column
        if split != "unlabeled":
            (labels + 1).astype(np.uint8).tofile(os.path.join(out, f"{split}_y.bin"))
        arrays[split] = (images, labels)
    folds = [rng.permutation(n_train)[:fold_size] for _ in range(n_folds)]
    with open(os.path.join(out, "fold_indices.txt"), "w") as f:
        f.writelines(" ".join(map(str, fold)) + " \n" for fold in folds)
    with open(os.path.join(out, "class_names.txt"), "w") as f:
        f.writelines(f"{name}\n" for name in ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey",
                                               "ship", "truck"))
    return folder, arrays, folds


def save_image(path, array):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array.transpose(1, 2, 0)).save(path, quality=95)


def write_image_folder(folder, classes=("cat", "dog", "fox"), per_class=10, test_per_class=3, unlabeled=6,
                       size=16, odd_size=(20, 12), seed=0):
    """PATH/train/<class>/ (PNG and JPEG alternating), PATH/unlabeled/ (nested), PATH/test/<class>/; one train
    image of ``odd_size`` (width, height) so that resizing is exercised."""
    rng = np.random.RandomState(seed)
    for part, n in (("train", per_class), ("test", test_per_class)):
        for c, name in enumerate(classes):
            for i, image in enumerate(class_images([c] * n, (3, size, size), rng)):
                save_image(os.path.join(folder, part, name, f"{i:03d}.{'png' if i % 2 else 'jpg'}"), image)
    for i, image in enumerate(class_images(rng.randint(0, len(classes), unlabeled), (3, size, size), rng)):
        save_image(os.path.join(folder, "unlabeled", f"batch{i % 2}", f"u{i:03d}.png"), image)
    w, h = odd_size
    save_image(os.path.join(folder, "train", classes[0], "odd.png"), class_images([0], (3, h, w), rng)[0])
    return folder
