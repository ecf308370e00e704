"""CIFAR-10 loading, the seeded balanced split and the resumable samplers."""
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from semisup.config import ConfigError
from semisup.data import CIFAR10_FOLDER, InfiniteSampler, load_cifar10, prepare_data, split_indices

from conftest import write_fake_cifar

# 2,000 generated labels, 200 per class, in a fixed shuffled order.
LABELS = np.random.RandomState(0).permutation(np.arange(2000) % 10)


def test_split_is_balanced_disjoint_and_complete():
    split = split_indices(LABELS, 250, 500, seed=1)
    assert np.bincount(LABELS[split.labeled], minlength=10).tolist() == [25] * 10
    assert np.bincount(LABELS[split.valid], minlength=10).tolist() == [50] * 10
    lb, va, ul = set(split.labeled), set(split.valid), set(split.unlabeled)
    assert len(lb) == 250 and len(va) == 500 and not lb & ul and not va & ul and not lb & va
    assert lb | va | ul == set(range(len(LABELS)))  # unlabeled = every other training image
    assert len(ul) == 2000 - 250 - 500


def test_same_seed_same_indices_pinned():
    """Pinned first indices: a change in the random stream (or in how it is used) changes the split."""
    split = split_indices(LABELS, 250, 500, seed=1)
    assert split.labeled[:8].tolist() == [2, 11, 19, 28, 29, 36, 38, 41]
    assert split.valid[:8].tolist() == [9, 10, 14, 16, 17, 21, 26, 27]
    assert split.unlabeled[:8].tolist() == [0, 1, 3, 4, 5, 6, 7, 8]
    again = split_indices(LABELS, 250, 500, seed=1)
    for a, b in ((split.labeled, again.labeled), (split.valid, again.valid), (split.unlabeled, again.unlabeled)):
        np.testing.assert_array_equal(a, b)


def test_different_seed_different_indices():
    a, b = split_indices(LABELS, 250, 500, seed=1), split_indices(LABELS, 250, 500, seed=2)
    assert b.labeled[:8].tolist() == [0, 2, 14, 16, 22, 42, 48, 52]
    assert len(set(a.labeled) & set(b.labeled)) < 100  # two draws of 25 out of 200 per class overlap little


def test_labeled_set_depends_only_on_seed_and_n_labeled():
    """Changing --n-valid (e.g. to make evaluations cheaper) keeps the labeled images; smaller sets nest."""
    ref = split_indices(LABELS, 250, 500, seed=3).labeled
    np.testing.assert_array_equal(split_indices(LABELS, 250, 100, seed=3).labeled, ref)
    np.testing.assert_array_equal(split_indices(LABELS, 250, 0, seed=3).labeled, ref)
    assert set(split_indices(LABELS, 100, 500, seed=3).labeled) <= set(ref)


def test_split_refuses_unbalanced_or_too_large_requests():
    with pytest.raises(ConfigError, match="multiples of the number of classes"):
        split_indices(LABELS, 255, 500, seed=1)
    with pytest.raises(ConfigError, match="class 0 has 200 training images"):
        split_indices(LABELS, 1500, 500, seed=1)


def test_load_fake_cifar_layout(fake_cifar):
    train, test = load_cifar10(fake_cifar)
    assert train.images.shape == (600, 3, 32, 32) and test.images.shape == (200, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.labels.bincount().tolist() == [60] * 10
    with open(os.path.join(fake_cifar, CIFAR10_FOLDER, "data_batch_1"), "rb") as f:
        first = pickle.load(f)
    np.testing.assert_array_equal(train.images[0].numpy().reshape(-1), first["data"][0])  # CHW row-major


def test_prepare_data_cuts_the_training_set(fake_cifar):
    data = prepare_data(fake_cifar, n_labeled=40, n_valid=100, seed=1)
    assert (len(data.labeled), len(data.valid), len(data.unlabeled), len(data.test)) == (40, 100, 460, 200)
    train, _ = load_cifar10(fake_cifar)
    assert torch.equal(data.labeled.images, train.images[torch.as_tensor(data.split.labeled)])
    assert torch.equal(data.unlabeled.labels, train.labels[torch.as_tensor(data.split.unlabeled)])
    with pytest.raises(ConfigError, match="must be smaller than the 600 training images"):
        prepare_data(fake_cifar, n_labeled=500, n_valid=100, seed=1)


def test_missing_folder_names_it_and_both_fixes(tmp_path):
    folder = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError) as exc:
        load_cifar10(folder)
    message = str(exc.value)
    assert folder in message and CIFAR10_FOLDER in message
    assert "--download" in message and "put the official" in message
    assert "\n" not in message


def test_missing_batch_file_is_named(fake_cifar, tmp_path):
    folder = shutil.copytree(fake_cifar, tmp_path / "partial")
    os.remove(os.path.join(folder, CIFAR10_FOLDER, "data_batch_4"))
    with pytest.raises(ConfigError, match="missing: data_batch_4"):
        load_cifar10(str(folder))


@pytest.mark.parametrize("content, words", [
    (b"this is not a pickle", "UnpicklingError"),
    (pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}), "expected uint8 images"),
    (pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1]}), "2 labels for 4 images"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}), "labels must lie in [0, 9]"),
    (pickle.dumps({"images": np.zeros((2, 3072), np.uint8)}), "KeyError"),
])
def test_malformed_batch_file_is_a_clear_error(tmp_path, content, words):
    folder = write_fake_cifar(str(tmp_path), n_train=50, n_test=10)
    path = os.path.join(folder, CIFAR10_FOLDER, "data_batch_3")
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(ConfigError) as exc:
        load_cifar10(folder)
    assert f"malformed CIFAR batch file {path}" in str(exc.value) and words in str(exc.value)


def test_download_failure_is_a_config_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(ConfigError, match="could not download CIFAR-10 into .*network unreachable"):
        load_cifar10(str(tmp_path), download=True)


def test_sampler_covers_each_index_once_per_epoch():
    sampler = InfiniteSampler(10, 3, seed=5)
    stream = torch.cat([sampler.next() for _ in range(10)])  # 30 indices: exactly 3 epochs, batches straddling
    for epoch in range(3):
        assert sorted(stream[10 * epoch:10 * (epoch + 1)].tolist()) == list(range(10))
    assert not torch.equal(stream[:10], stream[10:20])  # each epoch is a fresh permutation
    assert sampler.state_dict() == {"epoch": 2, "cursor": 10}


def test_sampler_state_resumes_the_identical_stream():
    sampler = InfiniteSampler(7, 4, seed=3, rank=1)
    for _ in range(5):
        sampler.next()
    state = sampler.state_dict()
    expected = [sampler.next() for _ in range(6)]
    resumed = InfiniteSampler(7, 4, seed=3, rank=1)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, [resumed.next() for _ in range(6)]))


def test_sampler_streams_differ_by_seed_and_rank():
    def first(seed, rank):
        return torch.cat([InfiniteSampler(50, 50, seed, rank).next()])
    assert torch.equal(first(1, 0), first(1, 0))
    assert not torch.equal(first(1, 0), first(2, 0))
    assert not torch.equal(first(1, 0), first(1, 1))
    with pytest.raises(ConfigError, match="empty set"):
        InfiniteSampler(0, 4, seed=1)
