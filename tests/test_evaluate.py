"""evaluate.py end to end on a tiny model trained a few steps on generated data, and its pieces by hand."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from semisup import runner
from semisup.augment import to_float
from semisup.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from semisup.commands.evaluate import main as evaluate
from semisup.data import CIFAR10_CLASSES, prepare_data
from semisup.evaluate.restore import recalibrate_bn
from semisup.models import create_model
from semisup.predict import predict

from conftest import ROOT, TINY

EVAL = ["--threads", "1", "--amp", "none", "--batch-size", "64"]


@pytest.fixture(scope="module")
def run_dir(fake_cifar, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    assert runner.main(TINY + ["--data-dir", fake_cifar, "--steps", "6", "--eval-every", "6", "--out", out]) == 0
    return out


@pytest.fixture(scope="module")
def ckpt(run_dir):
    return os.path.join(run_dir, "last.pt")


@pytest.fixture(scope="module")
def evaluated(ckpt):
    """Default output folder (eval-ema-test/ beside the checkpoint) and the data directory from the checkpoint."""
    assert evaluate(["--checkpoint", ckpt] + EVAL) == 0
    return os.path.join(os.path.dirname(ckpt), "eval-ema-test")


def read(folder):
    with open(os.path.join(folder, "metrics.json")) as f:
        metrics = json.load(f)
    saved = np.load(os.path.join(folder, "predictions.npz"))
    return metrics, saved["logits"], saved["labels"]


def test_metrics_json_equals_sklearn_on_saved_predictions(evaluated):
    metrics, logits, labels = read(evaluated)
    pred = logits.argmax(1)
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=range(10), zero_division=0)
    for i, row in enumerate(metrics["per_class"]):
        assert row["class"] == CIFAR10_CLASSES[i]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    macro = precision_recall_fscore_support(labels, pred, labels=range(10), average="macro", zero_division=0)
    assert [metrics["macro_avg"][k] for k in ("precision", "recall", "f1")] == pytest.approx(list(macro[:3]))
    cm = np.array(metrics["confusion_matrix"])
    assert (cm == confusion_matrix(labels, pred, labels=range(10))).all()
    assert cm.sum() == len(labels) == metrics["n_images"] == metrics["split_size"] == 200
    assert metrics["top1"] == 100.0 * np.trace(cm) / cm.sum()  # exactly: one prediction rule
    top5 = np.argsort(-logits, 1)[:, :5]
    assert metrics["top5"] == pytest.approx(100.0 * (top5 == labels[:, None]).any(1).mean())
    assert metrics["step"] == 6 and metrics["weights"] == "ema" and metrics["split"] == "test"
    assert metrics["config"]["n_labeled"] == 40 and metrics["ece_bins"] == 15


def test_ece_in_metrics_json_recomputed_by_hand(evaluated):
    metrics, logits, labels = read(evaluated)
    z = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
    probs = z / z.sum(1, keepdims=True)
    conf, correct = probs.max(1), probs.argmax(1) == labels
    ece = 0.0
    for b in range(15):
        inside = (conf > b / 15) & (conf <= (b + 1) / 15)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert metrics["ece"] == pytest.approx(ece, abs=1e-9)
    assert sum(b["count"] for b in metrics["reliability"]) == 200


def test_saved_logits_are_the_checkpoint_models_outputs(evaluated, ckpt, fake_cifar):
    _, logits, labels = read(evaluated)
    model = model_from_checkpoint(load_checkpoint(ckpt), "ema")
    test = prepare_data(fake_cifar, 40, 100, 1).test
    assert (labels == test.labels.numpy()).all()
    assert np.allclose(predict(model, test.images, 64).numpy(), logits, atol=1e-5)


def test_pngs_and_csv(evaluated):
    for name in ("confusion_matrix.png", "reliability.png"):
        image = imread(os.path.join(evaluated, name))
        assert image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) > 200
        assert image[..., :3].std() > 0.05  # something is drawn
    with open(os.path.join(evaluated, "per_class.csv")) as f:
        rows = [line.strip().split(",") for line in f]
    assert rows[0] == ["class", "precision", "recall", "f1", "support"]
    assert [r[0] for r in rows[1:]] == list(CIFAR10_CLASSES) and sum(int(r[4]) for r in rows[1:]) == 200


def test_valid_and_labeled_splits_are_the_training_images(ckpt, fake_cifar, tmp_path):
    data = prepare_data(fake_cifar, 40, 100, 1)
    for split, expected in (("valid", data.valid), ("labeled", data.labeled)):
        out = str(tmp_path / split)
        assert evaluate(["--checkpoint", ckpt, "--split", split, "--out", out] + EVAL) == 0
        _, _, labels = read(out)
        assert (labels == expected.labels.numpy()).all() and len(labels) == len(expected)


def test_compare_with_itself_is_all_zero(ckpt, tmp_path):
    out = str(tmp_path / "cmp")
    assert evaluate(["--checkpoint", ckpt, "--compare", ckpt, "--out", out] + EVAL) == 0
    with open(os.path.join(out, "compare.json")) as f:
        cmp = json.load(f)
    assert not np.any(cmp["confusion_matrix_diff"])
    assert all(row["diff"] == 0 for row in cmp["per_class"])
    assert cmp["top1"]["diff"] == cmp["top5"]["diff"] == cmp["ece"]["diff"] == 0
    assert imread(os.path.join(out, "compare_confusion_matrix.png")).ndim == 3


def test_compare_reports_b_minus_a(ckpt, tmp_path):
    """B = the raw weights saved as EMA: the difference must be B's matrix minus A's, cell by cell."""
    state = load_checkpoint(ckpt)
    b_path = str(tmp_path / "b" / "last.pt")
    os.makedirs(os.path.dirname(b_path))
    body = {k: v for k, v in state.items() if k != "format"}
    save_checkpoint(body | {"ema": state["model"]}, os.path.dirname(b_path))
    a_out, b_out = str(tmp_path / "a_out"), str(tmp_path / "b_out")
    assert evaluate(["--checkpoint", ckpt, "--compare", b_path, "--out", a_out] + EVAL) == 0
    assert evaluate(["--checkpoint", ckpt, "--weights", "raw", "--out", b_out] + EVAL) == 0
    (a, _, _), (b, _, _) = read(a_out), read(b_out)
    with open(os.path.join(a_out, "compare.json")) as f:
        cmp = json.load(f)
    cm_a, cm_b = np.array(a["confusion_matrix"]), np.array(b["confusion_matrix"])
    assert (np.array(cmp["confusion_matrix_diff"]) == cm_b - cm_a).all()
    for i, row in enumerate(cmp["per_class"]):
        assert row["diff"] == pytest.approx(100.0 * (cm_b[i, i] - cm_a[i, i]) / cm_a[i].sum())
    assert cmp["top1"]["diff"] == pytest.approx(b["top1"] - a["top1"])


def test_recalibrate_bn_changes_running_stats_and_nothing_else(ckpt, fake_cifar):
    model = model_from_checkpoint(load_checkpoint(ckpt), "ema")
    params = {k: v.clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    images = prepare_data(fake_cifar, 40, 100, 1).unlabeled.images[:64]
    assert recalibrate_bn(model, images, batch_size=64) == 1
    assert all(torch.equal(v, params[k]) for k, v in model.named_parameters())
    changed = [k for k, v in model.named_buffers() if not torch.equal(v, buffers[k])]
    assert {k.rsplit(".", 1)[1] for k in changed} == {"running_mean", "running_var", "num_batches_tracked"}
    assert all(not torch.equal(v, buffers[k]) for k, v in model.named_buffers() if "running_" in k)
    bn = model.blocks[0].bn1  # its input is the stem convolution's output, which no batch norm touches
    with torch.no_grad():
        stem = model.stem(to_float(images))
    assert torch.allclose(bn.running_mean, stem.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, stem.transpose(0, 1).flatten(1).var(1, unbiased=True), rtol=1e-4)
    assert bn.momentum == 0.001 and not model.training and int(bn.num_batches_tracked) == 1
    assert recalibrate_bn(model, images, batch_size=32) == 2  # two equal batches: the mean of the means
    assert torch.allclose(bn.running_mean, stem.mean((0, 2, 3)), atol=1e-5)


def test_recalibrate_bn_flag(ckpt):
    assert evaluate(["--checkpoint", ckpt, "--recalibrate-bn", "50"] + EVAL) == 0
    metrics, _, _ = read(os.path.join(os.path.dirname(ckpt), "eval-ema-test-bn50"))
    assert metrics["recalibrate_bn"] == 50 and metrics["n_images"] == 200


def test_pruned_model_with_smaller_arch(ckpt, tmp_path):
    torch.manual_seed(0)
    small = create_model("wrn-10-tiny", inner=[2, 5, 3])
    folder = str(tmp_path / "small")
    os.makedirs(folder)
    config = load_checkpoint(ckpt)["config"]
    save_checkpoint({"model_name": "wrn-10-tiny", "arch": small.arch, "model": small.state_dict(),
                     "ema": small.state_dict(), "step": 1, "config": config}, folder)
    out = str(tmp_path / "small_out")
    assert evaluate(["--checkpoint", os.path.join(folder, "last.pt"), "--out", out] + EVAL) == 0
    metrics, logits, _ = read(out)
    assert metrics["arch"]["inner"] == [2, 5, 3]
    test = prepare_data(config["data_dir"], 40, 100, 1).test
    assert np.allclose(predict(small, test.images, 64).numpy(), logits, atol=1e-5)


def _bad_inputs(tmp_path, ckpt):
    state = load_checkpoint(ckpt)
    body = {k: v for k, v in state.items() if k != "format"}
    pickled = tmp_path / "random.pkl"
    pickled.write_bytes(pickle.dumps({"a": [1, 2, 3]}))
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}}, str(foreign))
    wide = create_model("wrn-10-tiny", num_classes=100)
    for name, extra in (("c100", {"model_name": "wrn-10-tiny", "arch": wide.arch, "model": wide.state_dict(),
                                  "ema": wide.state_dict()}), ("noema", {"ema": None})):
        os.makedirs(tmp_path / name)
        save_checkpoint(body | extra, str(tmp_path / name))
    return {
        "random pickle": (["--checkpoint", str(pickled)], "not a readable semisup checkpoint"),
        "text file": (["--checkpoint", str(text)], "not a readable semisup checkpoint"),
        "no marker": (["--checkpoint", str(foreign)], "not a semisup checkpoint"),
        "missing file": (["--checkpoint", str(tmp_path / "absent.pt")], "no such checkpoint file"),
        "class count": (["--checkpoint", str(tmp_path / "c100" / "last.pt")], "model for 100 classes"),
        "no ema": (["--checkpoint", str(tmp_path / "noema" / "last.pt")], "holds no ema weights"),
        "missing data": (["--checkpoint", ckpt, "--data-dir", str(tmp_path / "empty")], "CIFAR-10 not found"),
        "too many bn images": (["--checkpoint", ckpt, "--recalibrate-bn", "100000"], "training images are"),
        "bad batch size": (["--checkpoint", ckpt, "--batch-size", "-1"], "--batch-size must be at least 0"),
        "bad compare": (["--checkpoint", ckpt, "--compare", str(pickled)], "--compare: "),
        "out is a file": (["--checkpoint", ckpt, "--out", str(text)], "cannot write the results to"),
    }


def test_bad_inputs_give_one_line_and_exit_2(ckpt, tmp_path, capsys):
    for case, (argv, message) in _bad_inputs(tmp_path, ckpt).items():
        try:
            code = evaluate(EVAL + ["--out", str(tmp_path / "never")] + argv)
        except SystemExit as exit_:
            code = exit_.code
        err = capsys.readouterr().err
        assert code == 2, case
        assert err.startswith("evaluate.py: error:") and err.count("\n") == 1 and message in err, (case, err)
    assert not os.path.exists(tmp_path / "never")


def test_cli_refuses_random_pickle_without_traceback(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(pickle.dumps(list(range(10))))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--checkpoint", str(path)],
                          capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("evaluate.py: error: --checkpoint: ") and proc.stderr.count("\n") == 1
