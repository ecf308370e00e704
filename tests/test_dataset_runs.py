"""train.py and evaluate.py on every dataset (tiny generated files, two steps each); the dataset's augmentation in
the Trainer and in the Taylor loss; the top confusions evaluate.py prints for many classes."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch

from semisup import augment, engine, runner
from semisup.checkpoint import load_checkpoint
from semisup.commands.evaluate import main as evaluate
from semisup.compress.taylor import training_loss_fn
from semisup.config import parse_args
from semisup.data import prepare_data
from semisup.evaluate.metrics import top_confusions
from semisup.evaluate.report import format_top_confusions
from semisup.models import create_model

from conftest import TINY
from datasets_support import write_fake_cifar100, write_fake_stl10, write_fake_svhn, write_image_folder

EVAL = ["--threads", "1", "--amp", "none", "--batch-size", "64"]
# dataset -> (flags beyond TINY, expected image size, test images, classes)
CASES = {
    "cifar100": (["--n-labeled", "100", "--n-valid", "100"], 32, 200, 100),
    "svhn": ([], 32, 60, 10),
    "svhn-extra": ([], 32, 60, 10),
    "stl10": (["--n-labeled", "10", "--n-valid", "20"], 96, 30, 10),
    "folder": (["--n-labeled", "6", "--n-valid", "3"], 16, 9, 3),
}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets"))
    write_fake_cifar100(root)
    write_fake_svhn(root)
    write_fake_stl10(root)
    return root, write_image_folder(os.path.join(root, "pets"))


def _dataset_flags(name, data_dirs):
    root, pets = data_dirs
    return ["--dataset", f"folder:{pets}"] if name == "folder" else ["--dataset", name, "--data-dir", root]


@pytest.fixture(scope="module")
def trained(data_dirs, tmp_path_factory):
    """Two MixMatch steps on each dataset: name -> (run folder, printed evaluate.py report)."""
    runs = {}
    for name, (flags, _, _, _) in CASES.items():
        out = str(tmp_path_factory.mktemp(f"run-{name}"))
        args = TINY + _dataset_flags(name, data_dirs) + flags + ["--steps", "2", "--eval-every", "2", "--out", out]
        assert runner.main(args) == 0, name
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert evaluate(["--checkpoint", os.path.join(out, "last.pt")] + EVAL) == 0
        runs[name] = (out, printed.getvalue())
    return runs


@pytest.mark.parametrize("name", list(CASES))
def test_two_steps_and_evaluation_on_each_dataset(trained, name):
    out, printed = trained[name]
    _, size, n_test, classes = CASES[name]
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert config["dataset"].startswith("folder:") if name == "folder" else config["dataset"] == name
    state = load_checkpoint(os.path.join(out, "last.pt"))
    assert state["step"] == 2 and state["arch"]["num_classes"] == classes
    # floor(log2 size) - 2 scales: 3 at 32x32, the 4-scale network on STL-10's 96x96, 2 for the 16x16 folder
    assert len(state["arch"]["widths"]) == {32: 3, 96: 4, 16: 2}[size]
    with open(os.path.join(out, "eval-ema-test", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["n_images"] == n_test and len(metrics["per_class"]) == classes
    assert np.asarray(metrics["confusion_matrix"]).shape == (classes, classes)
    assert ("top 20 confusions of 100 classes" in printed) == (classes == 100)
    assert ("confusion matrix (rows: true class" in printed) == (classes <= 20)


def test_evaluate_rebuilds_the_run_split(trained, data_dirs, tmp_path):
    out, _ = trained["stl10"]
    assert evaluate(["--checkpoint", os.path.join(out, "last.pt"), "--split", "labeled",
                            "--out", str(tmp_path)] + EVAL) == 0
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f)["n_images"] == 10  # fold 1 of fold_indices.txt
    expected = prepare_data(data_dirs[0], 10, 20, 1, dataset="stl10").labeled.labels.numpy()
    assert np.array_equal(np.load(tmp_path / "predictions.npz")["labels"], expected)


def test_folder_class_names_reach_the_report(trained):
    _, printed = trained["folder"]
    assert all(name in printed for name in ("cat", "dog", "fox"))


def test_default_run_folders_name_the_dataset():
    assert parse_args(["--dataset", "svhn", "--n-labeled", "1000"]).run_dir == "runs/svhn@1000"
    assert parse_args(["--dataset", "folder:/data/pets", "--n-labeled", "400", "--algorithm",
                       "supervised"]).run_dir == "runs/folder-pets@400-supervised"


@pytest.mark.parametrize("name, pad, flip", [("svhn", 4, False), ("stl10", 12, True)])
def test_trainer_and_taylor_use_the_dataset_augmentation(data_dirs, monkeypatch, name, pad, flip):
    seen = []
    real = augment.augment

    def spy(images, generator=None, pad=4, flip=True):
        seen.append((pad, flip))
        return real(images, generator, pad, flip)

    monkeypatch.setattr(augment, "augment", spy)
    flags = CASES[name][0]
    cfg = parse_args(TINY + _dataset_flags(name, data_dirs) + flags + ["--steps", "2", "--no-compile"])
    data = prepare_data(cfg.data_dir, cfg.n_labeled, cfg.n_valid, cfg.seed, dataset=name)
    model = create_model(cfg.model, data.num_classes, image_size=data.image_size)
    trainer = engine.Trainer(cfg, runner.make_runtime(cfg), data, model)
    trainer.train_step()
    assert seen and set(seen) == {(pad, flip)}
    seen.clear()
    training_loss_fn(cfg, data, torch.device("cpu"), 4)(model, 0)
    assert seen and set(seen) == {(pad, flip)}


def test_top_confusions_by_hand():
    cm = np.array([[5, 3, 0, 2],
                   [1, 6, 0, 0],
                   [0, 4, 2, 4],
                   [0, 0, 0, 8]])
    # Off-diagonal cells, largest first, ties by (true, predicted): (2,1)=4 and (2,3)=4 of class 2's 10 images,
    # then (0,1)=3 of 10, (0,3)=2 of 10, (1,0)=1 of 7.
    assert top_confusions(cm, 4) == [(2, 1, 4, 40.0), (2, 3, 4, 40.0), (0, 1, 3, 30.0), (0, 3, 2, 20.0)]
    assert top_confusions(cm)[-1] == (1, 0, 1, pytest.approx(100 / 7))
    text = format_top_confusions(cm, ["a", "b", "c", "d"], 2).splitlines()
    assert text == ["c -> b:     4 (40.0 %)", "c -> d:     4 (40.0 %)"]
    assert "no confusions" in format_top_confusions(np.eye(3, dtype=int) * 5, ["x", "y", "z"])
