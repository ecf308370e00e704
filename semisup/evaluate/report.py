"""Text tables and files for evaluate.py: the printed report, metrics.json, per_class.csv, predictions.npz.

Formatting is kept apart from the numbers (``metrics.classification_report``) so that what is printed and what is
written are the same dictionary, rendered twice.
"""
import csv
import math
import os
from typing import List, Sequence

import numpy as np

from .metrics import top_confusions

PRINT_MATRIX_MAX = 20  # wider confusion matrices are printed as their largest confusions (the PNG has them all)
TOP_CONFUSIONS = 20


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def short_names(class_names: Sequence[str], width: int = 5) -> List[str]:
    """Column headers for the printed matrix: names cut to ``width`` characters."""
    return [name[:width] for name in class_names]


def format_per_class(report: dict) -> str:
    name_w = max(12, max(len(row["class"]) for row in report["per_class"]) + 2)
    lines = [f"{'class':<{name_w}}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}"]
    for row in report["per_class"]:
        lines.append(f"{row['class']:<{name_w}}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>8.3f}"
                     f"{row['support']:>9d}")
    macro = report["macro_avg"]
    lines.append(f"{'macro avg':<{name_w}}{macro['precision']:>10.3f}{macro['recall']:>8.3f}{macro['f1']:>8.3f}"
                 f"{report['n_images']:>9d}")
    return "\n".join(lines)


def format_matrix(matrix, class_names: Sequence[str], signed: bool = False) -> str:
    """Rows = true class (full names), columns = predicted class (shortened names), counts in the cells."""
    matrix = np.asarray(matrix)
    if len(class_names) > PRINT_MATRIX_MAX:
        return f"({len(class_names)} classes: see the PNG and metrics.json for the matrix)"
    name_w = max(len(n) for n in class_names) + 2
    cells = [[(f"{v:+d}" if v else "0") if signed else str(v) for v in row] for row in matrix.tolist()]
    heads = short_names(class_names)
    col_w = max(max(len(h) for h in heads), max(len(c) for row in cells for c in row)) + 1
    lines = [" " * name_w + "".join(f"{h:>{col_w}}" for h in heads)]
    for name, row in zip(class_names, cells):
        lines.append(f"{name:<{name_w}}" + "".join(f"{c:>{col_w}}" for c in row))
    return "\n".join(lines)


def format_top_confusions(matrix, class_names: Sequence[str], k: int = TOP_CONFUSIONS) -> str:
    """``true -> predicted: count (percent of the true class)``, the k largest off-diagonal cells first."""
    cells = top_confusions(matrix, k)
    if not cells:
        return "(no confusions: every image is predicted as its true class)"
    pairs = [f"{class_names[i]} -> {class_names[j]}" for i, j, _, _ in cells]
    width = max(len(p) for p in pairs) + 1
    return "\n".join(f"{p + ':':<{width}} {n:>5d} ({pct:.1f} %)" for p, (_, _, n, pct) in zip(pairs, cells))


def _matrix_section(matrix, class_names: Sequence[str]) -> list:
    if len(class_names) <= PRINT_MATRIX_MAX:
        return ["confusion matrix (rows: true class, columns: predicted class)", format_matrix(matrix, class_names)]
    return [f"top {TOP_CONFUSIONS} confusions of {len(class_names)} classes (true -> predicted: count, % of the true "
            f"class; the whole matrix is in confusion_matrix.png and metrics.json)",
            format_top_confusions(matrix, class_names)]


def format_report(info: dict, report: dict, class_names: Sequence[str]) -> str:
    """The printed summary: where the numbers come from, accuracy, calibration, speed, then the two tables."""
    bn = f", batch norm re-estimated on {info['recalibrate_bn']} training images" if info["recalibrate_bn"] else ""
    head = [
        f"checkpoint {info['checkpoint']} (step {info['step']}, {info['weights']} weights{bn})",
        f"split      {info['split']}, {report['n_images']} images",
        f"top-1 {_fmt(report['top1'], '.2f')} %   top-5 {_fmt(report['top5'], '.2f')} %   "
        f"ECE ({report['ece_bins']} bins) {report['ece']:.4f}   {info['img_per_sec']:,.0f} images/s",
    ]
    return "\n".join(head + ["", format_per_class(report), "",
                             *_matrix_section(report["confusion_matrix"], class_names)])


def format_comparison(info_a: dict, info_b: dict, comparison: dict, class_names: Sequence[str]) -> str:
    """Per-class accuracy of A and B and B − A, then the matrix of differences."""
    name_w = max(12, max(len(n) for n in class_names) + 2)
    lines = [f"A: {info_a['checkpoint']} (step {info_a['step']})", f"B: {info_b['checkpoint']} (step {info_b['step']})",
             "", f"{'class':<{name_w}}{'acc A %':>9}{'acc B %':>9}{'B - A':>8}"]
    for row in comparison["per_class"]:
        lines.append(f"{row['class']:<{name_w}}{_fmt(row['accuracy_a'], '.1f'):>9}{_fmt(row['accuracy_b'], '.1f'):>9}"
                     f"{_fmt(row['diff'], '+.1f'):>8}")
    for key in ("top1", "top5"):
        row = comparison[key]
        lines.append(f"{key:<{name_w}}{row['a']:>9.1f}{row['b']:>9.1f}{row['diff']:>+8.1f}")
    lines += ["", "confusion matrix difference B - A (rows: true class, columns: predicted class)",
              format_matrix(comparison["confusion_matrix_diff"], class_names, signed=True)]
    return "\n".join(lines)


def write_per_class_csv(report: dict, path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for row in report["per_class"]:
            writer.writerow([row["class"], f"{row['precision']:.6f}", f"{row['recall']:.6f}", f"{row['f1']:.6f}",
                             row["support"]])


def write_predictions(logits: np.ndarray, labels: np.ndarray, folder: str) -> str:
    """predictions.npz: the float32 logits [N, C] and labels [N] every number in metrics.json is computed from."""
    path = os.path.join(folder, "predictions.npz")
    np.savez_compressed(path, logits=np.asarray(logits, dtype=np.float32), labels=np.asarray(labels))
    return path
