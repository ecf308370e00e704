"""One prediction rule: tied logits give the same top-1 in the report, its confusion matrix, calibration and the
logged accuracy; top-k holds the top-1; the classifier head runs in float32 under bf16 autocast."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from semisup.commands.evaluate import main as evaluate
from semisup.evaluate.metrics import classification_report, expected_calibration_error, softmax
from semisup.models import create_model
from semisup.predict import accuracy, model_logits, predict, predicted_classes, ranked_classes, tied_top

from accum_support import single_process_trainer, tiny_config
from conftest import train_tiny

NAMES = [f"c{i}" for i in range(4)]
# Rows 0-3 tie at the top (classes 1 and 2; all four; 0 and 3; 2 and 3), row 4 has one maximum.
TIED = torch.tensor([[0.0, 2.0, 2.0, 1.0],
                     [1.0, 1.0, 1.0, 1.0],
                     [3.0, -1.0, 0.0, 3.0],
                     [0.5, 0.0, 4.0, 4.0],
                     [0.0, 0.0, 0.0, 5.0]])


def test_ties_go_to_the_lowest_class_as_argmax_does():
    assert predicted_classes(TIED).tolist() == [1, 0, 0, 2, 3]
    assert predicted_classes(TIED).tolist() == TIED.argmax(1).tolist() == TIED.numpy().argmax(1).tolist()
    assert tied_top(TIED) == 4 and tied_top(TIED[4:]) == 0


def test_top_k_holds_the_top_1_and_ranks_ties_by_class():
    assert ranked_classes(TIED, 3).tolist() == [[1, 2, 3], [0, 1, 2], [0, 3, 2], [2, 3, 0], [3, 0, 1]]
    for k in range(1, 5):
        assert (ranked_classes(TIED, k)[:, 0] == predicted_classes(TIED)).all()
    labels = torch.tensor([2, 3, 3, 3, 3])  # each the runner-up of a tie, or row 4's maximum
    assert accuracy(TIED, labels, 1) == 20.0
    assert accuracy(TIED, labels, 2) == 80.0  # row 1's class 3 is only fourth among four equal logits


@pytest.mark.parametrize("labels", [[1, 0, 0, 2, 3], [2, 3, 3, 3, 0], [0, 1, 2, 3, 3]])
def test_report_matrix_calibration_and_logged_metric_agree_on_ties(labels):
    labels = torch.tensor(labels)
    report = classification_report(TIED.numpy(), labels.numpy(), NAMES)
    cm = np.array(report["confusion_matrix"])
    assert report["top1"] == 100.0 * np.trace(cm) / cm.sum() == accuracy(TIED, labels)
    assert report["top1"] == pytest.approx(100.0 * sum(r["recall"] * r["support"] for r in report["per_class"]) / 5)
    assert report["tied_top1"] == 4
    hits = sum(b["accuracy"] * b["count"] for b in report["reliability"] if b["count"])
    assert hits == pytest.approx(np.trace(cm))
    ece, _ = expected_calibration_error(softmax(TIED.numpy()), labels.numpy(), 15)
    assert ece == pytest.approx(report["ece"])


class Tied(nn.Module):
    """A classifier whose logits tie between classes 0 and 1 on every image (then class 2, 3, ...)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))
        self.register_buffer("order", -torch.arange(num_classes, dtype=torch.float32).clamp(min=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.order.expand(len(x), -1) + self.scale * x.mean((1, 2, 3))[:, None]


def test_logged_accuracy_is_the_reports_top1_on_tied_logits(fake_cifar):
    trainer = single_process_trainer(tiny_config(fake_cifar), Tied())
    logged = trainer.evaluate()
    test = trainer.data.test
    logits = predict(trainer.model, test.images)
    assert tied_top(logits) == len(test)
    report = classification_report(logits.numpy(), test.labels.numpy(), [str(i) for i in range(10)])
    share_of_class_0 = 100.0 * int((test.labels == 0).sum()) / len(test)
    assert logged["test_acc"] == logged["test_acc_ema"] == report["top1"] == share_of_class_0
    assert np.array(report["confusion_matrix"])[:, 1:].sum() == 0


def test_head_runs_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = create_model("wrn-10-tiny").eval()
    x = torch.randn(64, 3, 32, 32)
    with torch.inference_mode():
        logits = model_logits(model, x, torch.autocast("cpu", dtype=torch.bfloat16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = model.features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x)
    assert logits.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    assert torch.equal(logits, model.fc(features.float()))
    assert torch.equal(model_logits(model, x), model(x))


def test_model_without_a_head_runs_whole_under_autocast():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(5, 3, 2, 2)
    with torch.inference_mode():
        logits = model_logits(model, x, torch.autocast("cpu", dtype=torch.bfloat16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = model(x).float()
    assert logits.dtype == torch.float32 and torch.equal(logits, expected)


def test_bf16_evaluation_top1_is_the_matrix_diagonal(fake_cifar, tmp_path_factory):
    ckpt = train_tiny(tmp_path_factory, fake_cifar, "top1_run", 4)
    out = str(tmp_path_factory.mktemp("top1_eval"))
    assert evaluate(["--checkpoint", ckpt, "--out", out, "--amp", "bf16", "--threads", "1"]) == 0
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    logits = np.load(os.path.join(out, "predictions.npz"))["logits"]
    cm = np.array(metrics["confusion_matrix"])
    assert metrics["amp"] == "bfloat16" and cm.sum() == metrics["n_images"] == 200
    assert metrics["top1"] == 100.0 * np.trace(cm) / cm.sum()
    assert metrics["tied_top1"] == tied_top(torch.from_numpy(logits))
