"""Every dataset read from tiny files in its official on-disk format: layout, labels, splits and the cache."""
import os
import pickle

import numpy as np
import pytest
import torch

from semisup.config import ConfigError
from semisup.data import prepare_data
from semisup.datasets import DATASETS, cache, default_n_valid, load_source, tag
from semisup.datasets import svhn as svhn_module

from datasets_support import write_fake_cifar100, write_fake_stl10, write_fake_svhn, write_image_folder


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    return write_fake_cifar100(str(tmp_path_factory.mktemp("c100")))


@pytest.fixture
def svhn(tmp_path):
    return write_fake_svhn(str(tmp_path))


@pytest.fixture
def stl10(tmp_path):
    return write_fake_stl10(str(tmp_path))


def _disjoint_and_sized(split, n_pool, n_labeled, n_valid):
    lb, va, ul = set(split.labeled), set(split.valid), set(split.unlabeled)
    assert (len(lb), len(va)) == (n_labeled, n_valid)
    assert not lb & va and not lb & ul and not va & ul
    assert lb | va | ul == set(range(n_pool))


def test_registry_holds_the_official_settings():
    settings = {name: (s.num_classes, s.image_size, s.pad, s.flip) for name, s in DATASETS.items()}
    assert settings == {"cifar10": (10, 32, 4, True), "cifar100": (100, 32, 4, True), "svhn": (10, 32, 4, False),
                        "svhn-extra": (10, 32, 4, False), "stl10": (10, 96, 12, True)}
    assert tag("folder:/data/my flowers/") == "folder-my flowers" and tag("svhn-extra") == "svhn-extra"
    assert [default_n_valid(n, k) for n, k in (("cifar100", 250), ("stl10", 1000), ("stl10", 5000),
                                                ("folder:x", 40))] == [5000, 1000, 0, 0]


def test_cifar100_reads_fine_labels_and_meta(cifar100):
    data = prepare_data(cifar100, 100, 100, seed=1, dataset="cifar100")
    assert data.num_classes == 100 and data.class_names[:2] == ("fine00", "fine01")
    assert (len(data.labeled), len(data.valid), len(data.unlabeled), len(data.test)) == (100, 100, 200, 200)
    assert data.labeled.labels.bincount(minlength=100).tolist() == [1] * 100
    _disjoint_and_sized(data.split, 400, 100, 100)
    assert (data.pad, data.flip, data.image_size) == (4, True, 32)


def test_cifar100_missing_names_folder_and_both_fixes(tmp_path):
    with pytest.raises(ConfigError) as exc:
        prepare_data(str(tmp_path), 100, 0, 1, dataset="cifar100")
    message = str(exc.value)
    assert f"CIFAR-100 not found in {tmp_path}/cifar-100-python" in message and "--download" in message
    assert "missing: train, test, meta" in message and "\n" not in message


def test_svhn_layout_and_digit_ten_is_label_zero(svhn):
    folder, arrays = svhn
    source = load_source("svhn", folder)
    images, labels = arrays["train"]
    assert torch.equal(source.train.images, torch.from_numpy(images))  # X[h, w, c, i] -> images[i, c, h, w]
    assert torch.equal(source.train.labels, torch.from_numpy(labels.astype(np.int64)))
    assert 0 in source.train.labels.tolist() and source.train.labels.max() == 9
    assert len(source.test) == 60 and source.unlabeled is None


def test_svhn_extra_draws_labels_from_train_and_extra(svhn):
    folder, arrays = svhn
    data = prepare_data(folder, 100, 50, seed=2, dataset="svhn-extra")
    _disjoint_and_sized(data.split, 300, 100, 50)  # train (200) + extra (100) is the pool
    assert len(data.unlabeled) == 300 - 150 and (data.pad, data.flip) == (4, False)
    assert (data.split.labeled >= 200).any() and (data.split.labeled < 200).any()  # labels from both files
    plain = prepare_data(folder, 100, 50, seed=2, dataset="svhn")
    assert len(plain.unlabeled) == 200 - 150


def test_svhn_is_decoded_once_into_a_checked_cache(svhn, monkeypatch, capsys):
    folder, _ = svhn
    first = load_source("svhn", folder)
    path = cache.cache_path(folder, "svhn-train")
    assert not os.path.exists(path)  # nothing is written before the split is known to be valid
    for write in first.pending:
        write()
    assert "decoded images cached in" in capsys.readouterr().err and os.path.isfile(path)

    def no_decoding(path):
        raise AssertionError("decoded again")

    monkeypatch.setattr(svhn_module, "decode_mat", no_decoding)
    again = load_source("svhn", folder)
    assert torch.equal(again.train.images, first.train.images) and not again.pending
    source = os.path.join(folder, "svhn", "train_32x32.mat")
    os.utime(source, ns=(0, os.stat(source).st_mtime_ns + 10 ** 9))  # a changed source: the cache is stale
    assert cache.load(path, cache.stamp([source]))[1] == "the source files changed"
    with open(path, "r+b") as f:  # a damaged cache is never trusted either
        f.truncate(100)
    assert cache.load(path, cache.stamp([source]))[0] is None


def test_malformed_svhn_file_is_one_clear_line(svhn):
    import scipy.io
    folder, _ = svhn
    path = os.path.join(folder, "svhn", "test_32x32.mat")
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[1], [2], [11], [3]])})
    with pytest.raises(ConfigError, match=r"malformed SVHN file .*test_32x32.mat: expected 4 labels in 1..10"):
        load_source("svhn", folder)


def test_stl10_binaries_are_column_major(stl10):
    folder, arrays, folds = stl10
    source = load_source("stl10", folder)
    images, labels = arrays["train"]
    assert torch.equal(source.train.images, torch.from_numpy(images))
    assert torch.equal(source.train.labels, torch.from_numpy(labels.astype(np.int64)))
    assert source.unlabeled.images.shape == (40, 3, 96, 96) and (source.unlabeled.labels == -1).all()
    assert [f.tolist() for f in source.folds] == [f.tolist() for f in folds] and source.class_names[2] == "car"


def test_stl10_fold_split_and_whole_labeled_set(stl10):
    folder, _, folds = stl10
    data = prepare_data(folder, 10, 20, seed=3, dataset="stl10")  # 10 labels = the fold size: fold 3
    assert data.split.labeled.tolist() == sorted(folds[2].tolist())
    _disjoint_and_sized(data.split, 60, 10, 20)
    assert len(data.unlabeled) == 60 - 10 - 20 + 40 and (data.pad, data.flip, data.image_size) == (12, True, 96)
    whole = prepare_data(folder, 60, 0, seed=1, dataset="stl10")  # every labeled-train image, plus the unlabeled
    assert whole.split.labeled.tolist() == list(range(60)) and len(whole.unlabeled) == 40
    with pytest.raises(ConfigError, match="--seed 11 picks fold 11 of fold_indices.txt for 10 labels, but it holds "
                                          "folds 1-10"):
        prepare_data(folder, 10, 0, seed=11, dataset="stl10")


def test_malformed_stl10_file_is_one_clear_line(stl10):
    folder = stl10[0]
    with open(os.path.join(folder, "stl10_binary", "test_X.bin"), "ab") as f:
        f.write(b"\0" * 5)
    with pytest.raises(ConfigError, match="malformed STL-10 file .*test_X.bin: .* bytes is not a whole number"):
        load_source("stl10", folder)
    os.remove(os.path.join(folder, "stl10_binary", "fold_indices.txt"))
    with pytest.raises(ConfigError, match="STL-10 not found in .*stl10_binary: rerun with --download .*missing: "
                                          "fold_indices.txt"):
        load_source("stl10", folder)


def test_folder_classes_sizes_and_split(tmp_path, capsys):
    path = write_image_folder(str(tmp_path / "pets"))
    data = prepare_data("", 6, 3, seed=1, dataset=f"folder:{path}")
    assert data.class_names == ("cat", "dog", "fox") and data.image_size == 16
    assert data.labeled.images.shape == (6, 3, 16, 16) and len(data.test) == 9
    _disjoint_and_sized(data.split, 31, 6, 3)  # 10 + 10 + 10 images and the odd-sized one
    assert len(data.unlabeled) == 31 - 9 + 6
    err = capsys.readouterr().err
    assert "31 train images in 3 classes, 6 unlabeled, 9 test; most common size 16x16; 1 image of other sizes " \
           "resized to 16x16" in err
    assert os.path.isfile(cache.cache_path(path, "folder-auto"))
    big = prepare_data("", 6, 0, seed=1, dataset=f"folder:{path}", image_size=24)
    assert big.labeled.images.shape == (6, 3, 24, 24)
    green = data.test.images[data.test.labels == 1].float().mean().item()  # class 1's grey level: 23
    assert abs(green - 23) < 6  # JPEG and PNG decode to the colour written


def test_runs_saved_before_the_dataset_field_resume_as_cifar10():
    from semisup.config import Config, config_differences
    old = {k: v for k, v in Config().to_dict().items() if k not in ("dataset", "image_size")}
    assert config_differences(old, Config().to_dict()) == []
    assert config_differences(old, Config(dataset="svhn").to_dict()) == ["dataset"]


class _OtherCodec:
    """Unpickles as _codecs.encode('x', 'rot13'): the codec allow-list must not be a way to any other encoding."""

    def __reduce__(self):
        import _codecs

        return _codecs.encode, ("x", "rot13")


class _Call:
    def __reduce__(self):
        return os.getcwd, ()


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_cifar100_batches_written_at_any_pickle_protocol(tmp_path, protocol):
    """Python 3 writes bytes at protocol 2 through _codecs.encode (numpy arrays too): they load, as torchvision's
    loader reads them; the default protocol needs no codec at all."""
    folder = write_fake_cifar100(str(tmp_path))
    out = os.path.join(folder, "cifar-100-python")
    for name in ("train", "test", "meta"):
        with open(os.path.join(out, name), "rb") as f:
            entry = pickle.load(f)
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump(entry, f, protocol=protocol)
    with open(os.path.join(out, "train"), "rb") as f:
        assert (b"_codecs" in f.read()) == (protocol == 2)  # the case this is about
    data = prepare_data(folder, 100, 100, seed=1, dataset="cifar100")
    assert data.num_classes == 100 and len(data.labeled) == 100 and data.class_names[0] == "fine00"


@pytest.mark.parametrize("payload, refused", [(_OtherCodec(), "_codecs.encode with encoding 'rot13'"),
                                              (_Call(), "refused to load posix.getcwd")])
def test_cifar100_refuses_code_in_a_batch(tmp_path, payload, refused):
    folder = write_fake_cifar100(str(tmp_path))
    path = os.path.join(folder, "cifar-100-python", "train")
    with open(path, "rb") as f:
        entry = pickle.load(f)
    with open(path, "wb") as f:
        pickle.dump({**entry, "filenames": payload}, f, protocol=2)
    with pytest.raises(ConfigError, match=refused):
        prepare_data(folder, 100, 100, seed=1, dataset="cifar100")
