"""The evaluation math and its rendering, on tiny examples worked out by hand."""
import math

import numpy as np
import pytest
from matplotlib.image import imread

from semisup.evaluate.metrics import (
    classification_report,
    compare_reports,
    expected_calibration_error,
    per_class_accuracy,
)
from semisup.evaluate.plots import plot_confusion_difference, plot_confusion_matrix, plot_reliability, row_normalized
from semisup.evaluate.report import format_matrix, format_report
from semisup.records import write_json


def test_ece_by_hand():
    # confidences 0.9 (right), 0.62 (wrong), 0.58 (right), 0.78 (right), 0.91 (right); 15 bins of width 1/15.
    probs = np.array([[0.9, 0.1], [0.62, 0.38], [0.42, 0.58], [0.22, 0.78], [0.91, 0.09]])
    labels = np.array([0, 1, 1, 1, 0])
    ece, bins = expected_calibration_error(probs, labels, 15)
    # 0.9 and 0.91 share bin (13/15, 14/15]: accuracy 1, confidence 0.905, gap 0.095 for 2 of 5 images.
    expected = (2 * 0.095 + abs(0 - 0.62) + abs(1 - 0.58) + abs(1 - 0.78)) / 5
    assert ece == pytest.approx(expected)
    assert [b["count"] for b in bins] == [0] * 8 + [1, 1, 0, 1, 0, 2, 0]
    assert bins[13]["accuracy"] == 1.0 and bins[13]["confidence"] == pytest.approx(0.905)
    assert bins[0]["accuracy"] is None and len(bins) == 15


def test_ece_zero_when_confidence_equals_accuracy():
    # four images, all at confidence 0.75, three right: perfectly calibrated.
    probs = np.tile([0.75, 0.25], (4, 1))
    ece, _ = expected_calibration_error(probs, np.array([0, 0, 0, 1]), 15)
    assert ece == pytest.approx(0.0)


def test_classification_report_by_hand():
    # true 0,0,1,2 ; predicted 0,1,1,1 (class 2 never predicted, class 0 once)
    logits = np.array([[3.0, 1, 0], [0, 2, 1], [0, 5, 1], [1, 2, 0]], dtype=np.float32)
    report = classification_report(logits, np.array([0, 0, 1, 2]), ["a", "b", "c"])
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    a, b, c = report["per_class"]
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((1.0, 0.5, 2 / 3, 2))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((1 / 3, 1.0, 0.5))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 1)
    assert report["top1"] == pytest.approx(50.0)
    assert report["top5"] == pytest.approx(100.0)  # k is capped at the number of classes
    assert report["macro_avg"]["f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def _report_of(cm: np.ndarray) -> dict:
    """classification_report of predictions that make exactly the confusion matrix ``cm``."""
    labels = np.concatenate([[t] * int(cm[t].sum()) for t in range(len(cm))]).astype(int)
    predicted = np.concatenate([[p] * int(cm[t, p]) for t in range(len(cm)) for p in range(len(cm))]).astype(int)
    return classification_report(np.eye(len(cm), dtype=np.float32)[predicted], labels, ["x", "y"][:len(cm)])


def test_per_class_accuracy_and_comparison():
    cm_a = np.array([[8, 2], [5, 5]])
    cm_b = np.array([[9, 1], [3, 7]])
    assert per_class_accuracy(_report_of(cm_a)).tolist() == [80.0, 50.0]
    assert math.isnan(per_class_accuracy(_report_of(np.array([[1, 0], [0, 0]])))[1])
    a = {**_report_of(cm_a), "top1": 65.0, "top5": 100.0, "ece": 0.1}
    b = {**_report_of(cm_b), "top1": 80.0, "top5": 100.0, "ece": 0.05}
    assert a["confusion_matrix"] == cm_a.tolist() and b["confusion_matrix"] == cm_b.tolist()
    cmp = compare_reports(a, b, ["x", "y"])
    assert cmp["confusion_matrix_diff"] == [[1, -1], [-2, 2]]
    assert [r["diff"] for r in cmp["per_class"]] == pytest.approx([10.0, 20.0])
    assert cmp["top1"]["diff"] == 15.0 and cmp["ece"]["diff"] == pytest.approx(-0.05)


def test_row_normalized():
    assert row_normalized(np.array([[1, 3], [0, 0]])).tolist() == [[25.0, 75.0], [0.0, 0.0]]


def test_printed_table_holds_the_numbers():
    report = classification_report(np.eye(3, dtype=np.float32)[[0, 1, 1]], np.array([0, 1, 2]), ["cat", "dog", "frog"])
    info = {"checkpoint": "x.pt", "step": 7, "weights": "ema", "split": "test", "recalibrate_bn": 0,
            "img_per_sec": 1234.0}
    text = format_report(info, report, ["cat", "dog", "frog"])
    assert "top-1 66.67 %" in text and "1,234 images/s" in text and "step 7" in text
    rows = format_matrix(report["confusion_matrix"], ["cat", "dog", "frog"]).splitlines()
    assert rows[0].split() == ["cat", "dog", "frog"]
    assert rows[3].split() == ["frog", "0", "1", "0"]
    assert format_matrix([[0, -2], [3, 0]], ["a", "b"], signed=True).splitlines()[2].split() == ["b", "+3", "0"]


def test_json_writes_nan_as_null(tmp_path):
    write_json({"x": float("nan"), "y": [1.5, float("nan")]}, str(tmp_path / "m.json"))
    assert (tmp_path / "m.json").read_text().replace(" ", "").replace("\n", "") == '{"x":null,"y":[1.5,null]}'


def test_plots_at_10_and_100_classes(tmp_path):
    rng = np.random.RandomState(0)
    for n in (10, 100):
        names = [f"class{i}" for i in range(n)]
        cm = rng.randint(0, 30, size=(n, n))
        plot_confusion_matrix(cm, names, str(tmp_path / f"cm{n}.png"))
        plot_confusion_difference(cm - cm.T, names, str(tmp_path / f"diff{n}.png"))
        for name in (f"cm{n}.png", f"diff{n}.png"):
            image = imread(str(tmp_path / name))
            assert image.ndim == 3 and min(image.shape[:2]) >= 600
    probs = rng.dirichlet(np.ones(10), size=500)
    ece, bins = expected_calibration_error(probs, rng.randint(0, 10, 500))
    plot_reliability(bins, ece, str(tmp_path / "rel.png"))
    assert imread(str(tmp_path / "rel.png")).shape[:2] == (700, 600)
