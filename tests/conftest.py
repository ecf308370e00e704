"""Shared fixtures: small generated CIFAR-format data, and the real copy when ../shared is there."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PREPARE = os.path.join(ROOT, "..", "shared", "data", "prepare_cifar10.py")


def write_fake_cifar(folder, n_train=600, n_test=200, num_classes=10, seed=0):
    """CIFAR-10's python layout with random images whose mean colour depends on the class (learnable)."""
    rng = np.random.RandomState(seed)
    out = os.path.join(folder, "cifar-10-batches-py")
    os.makedirs(out, exist_ok=True)

    def batch(n, name):
        labels = np.arange(n) % num_classes
        rng.shuffle(labels)
        base = (labels[:, None] * 23 % 256).astype(np.int64)
        data = np.clip(base + rng.randint(-40, 40, size=(n, 3072)), 0, 255).astype(np.uint8)
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump({"data": data, "labels": labels.tolist(), "batch_label": name}, f)

    for i in range(1, 6):
        batch(n_train // 5, f"data_batch_{i}")
    batch(n_test, "test_batch")
    with open(os.path.join(out, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(num_classes)]}, f)
    return folder


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory):
    return write_fake_cifar(str(tmp_path_factory.mktemp("cifar")))


@pytest.fixture(scope="session")
def real_cifar(tmp_path_factory):
    """The real CIFAR-10 (JPEG copy) from ../shared, or skip."""
    if not os.path.isfile(SHARED_PREPARE):
        pytest.skip("real CIFAR-10 needs ../shared/data/prepare_cifar10.py beside the checkout")
    folder = str(tmp_path_factory.mktemp("real_cifar"))
    subprocess.run([sys.executable, SHARED_PREPARE, folder], check=True, capture_output=True)
    return folder


TINY = ["--model", "wrn-10-tiny", "--n-labeled", "40", "--n-valid", "100", "--batch-size", "8",
        "--eval-batch-size", "64", "--threads", "1", "--no-progress", "--amp", "none"]


def train_tiny(tmp_path_factory, data_dir, name, steps, *flags):
    """The last.pt of a TINY run of ``steps`` steps on ``data_dir`` with ``flags``, in a fresh folder ``name``."""
    from semisup.runner import main as train

    out = str(tmp_path_factory.mktemp(name))
    assert train(TINY + ["--data-dir", data_dir, "--out", out, "--steps", str(steps), "--eval-every", str(steps),
                         *flags]) == 0
    return os.path.join(out, "last.pt")
