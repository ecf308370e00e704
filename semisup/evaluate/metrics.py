"""The evaluation report: per-class scores, confusion matrix, calibration (accuracy is ``semisup.predict``).

Every number here starts from ``semisup.predict.predicted_classes``, the rule train.py's logged accuracy uses too,
so the top-1 is the trace of the confusion matrix over the image count, whatever ties the logits hold.
"""
from typing import Sequence

import numpy as np
import torch

from ..predict import accuracy, predicted_classes, tied_top


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, predicted=None):
    """(ECE, bins) with equal-width confidence bins on (0, 1], as Guo et al. (2017) define it.

    Confidence is the top softmax probability; an image is correct when its predicted class (``predicted``, by
    default ``predicted_classes`` of ``probs``) is its label; an image falls in bin b when
    lower_b < confidence <= upper_b.
    ECE = sum over bins of (count_b / N) * |accuracy_b - mean confidence_b|, a fraction in [0, 1]. Each bin is
    reported (empty bins with accuracy and confidence None) so the reliability diagram is drawn from the same numbers.
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence = probs.max(1)
    predicted = predicted_classes(torch.from_numpy(probs)).numpy() if predicted is None else np.asarray(predicted)
    correct = (predicted == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece, bins = 0.0, []
    for lower, upper in zip(edges[:-1], edges[1:]):
        inside = (confidence > lower) & (confidence <= upper)
        count = int(inside.sum())
        acc = float(correct[inside].mean()) if count else None
        conf = float(confidence[inside].mean()) if count else None
        if count:
            ece += count / len(labels) * abs(acc - conf)
        bins.append({"lower": float(lower), "upper": float(upper), "count": count, "accuracy": acc,
                     "confidence": conf})
    return ece, bins


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, shifted by the row maximum so large logits do not overflow."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def classification_report(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                          n_bins: int = 15) -> dict:
    """Every number evaluate.py reports, from logits [N, C] and labels [N].

    Precision, recall and F1 come from scikit-learn with ``zero_division=0`` (a class never predicted gets
    precision 0 rather than a warning and NaN); the confusion matrix has rows = true class, columns = predicted.
    scikit-learn is imported here rather than at the top because the training loop imports this module and would
    otherwise pay about a second of start-up for it.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    logits, labels = np.asarray(logits), np.asarray(labels)
    classes = list(range(len(class_names)))
    t_logits, t_labels = torch.from_numpy(logits), torch.from_numpy(labels)
    predicted = predicted_classes(t_logits).numpy()
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                                     zero_division=0)
    macro = precision_recall_fscore_support(labels, predicted, labels=classes, average="macro", zero_division=0)
    ece, bins = expected_calibration_error(softmax(logits), labels, n_bins, predicted)
    return {
        "n_images": int(len(labels)),
        "top1": accuracy(t_logits, t_labels, 1),
        "tied_top1": tied_top(t_logits),
        "top5": accuracy(t_logits, t_labels, 5),
        "per_class": [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f),
                       "support": int(s)} for name, p, r, f, s in zip(class_names, precision, recall, f1, support)],
        "macro_avg": {"precision": float(macro[0]), "recall": float(macro[1]), "f1": float(macro[2])},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "ece": float(ece),
        "ece_bins": n_bins,
        "reliability": bins,
    }


def per_class_accuracy(report: dict) -> np.ndarray:
    """Percent of each true class predicted correctly: scikit-learn's recall, NaN for a class with no images."""
    return np.array([100.0 * row["recall"] if row["support"] else np.nan for row in report["per_class"]])


def compare_reports(a: dict, b: dict, class_names: Sequence[str]) -> dict:
    """What changed from model A to model B on the same images: B minus A, per class and per matrix cell."""
    cm_a, cm_b = np.asarray(a["confusion_matrix"]), np.asarray(b["confusion_matrix"])
    acc_a, acc_b = per_class_accuracy(a), per_class_accuracy(b)
    return {
        "top1": {"a": a["top1"], "b": b["top1"], "diff": b["top1"] - a["top1"]},
        "top5": {"a": a["top5"], "b": b["top5"], "diff": b["top5"] - a["top5"]},
        "ece": {"a": a["ece"], "b": b["ece"], "diff": b["ece"] - a["ece"]},
        "per_class": [{"class": name, "accuracy_a": float(x), "accuracy_b": float(y), "diff": float(y - x)}
                      for name, x, y in zip(class_names, acc_a, acc_b)],
        "confusion_matrix_diff": (cm_b - cm_a).tolist(),
    }


def top_confusions(cm, k: int = 20) -> list:
    """The ``k`` largest off-diagonal cells of a confusion matrix (rows: true class), largest first.

    Each is (true, predicted, count, percent of the true class's images); ties go to the lower (true, predicted).
    Cells with no image are left out, so a near-perfect model lists fewer than ``k``. This is what a 100-class
    matrix can be read by in text: the pairs the model mixes up most.
    """
    cm = np.asarray(cm)
    rows = cm.sum(1)
    cells = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(i, j, n, 100.0 * n / rows[i]) for n, i, j in cells[:k]]
