"""PNG figures for evaluate.py: confusion matrix, reliability diagram, and the difference of two matrices.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot, so no display or global
backend is touched and nothing stays open between calls. Cell text is written only while it stays legible (up to
``ANNOTATE_MAX`` classes); beyond that the colours carry the matrix and the tick labels shrink, so a 100-class matrix
is still usable.
"""
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

ANNOTATE_MAX = 20  # classes up to which every cell carries its numbers


def _figure(n_classes: int) -> Figure:
    side = float(np.clip(0.55 * n_classes + 2.5, 6.0, 24.0))
    fig = Figure(figsize=(side + 1.5, side), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _label_axes(ax, class_names: Sequence[str]) -> None:
    n = len(class_names)
    size = 9 if n <= ANNOTATE_MAX else max(5.0, 9 - n / 25)
    ticks = np.arange(n)
    ax.set_xticks(ticks)
    ax.set_xticklabels(class_names, rotation=45 if n <= ANNOTATE_MAX else 90, ha="right", fontsize=size,
                       rotation_mode="anchor")
    ax.set_yticks(ticks)
    ax.set_yticklabels(class_names, fontsize=size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")


def row_normalized(cm: np.ndarray) -> np.ndarray:
    """Each row as percentages of its true class (a row with no images stays 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(1, keepdims=True)
    return np.divide(100.0 * cm, rows, out=np.zeros_like(cm), where=rows > 0)


def plot_confusion_matrix(cm, class_names: Sequence[str], path: str, title: str = "") -> None:
    """Heatmap of row-normalized percentages; each cell shows its count and percentage (small class counts)."""
    cm = np.asarray(cm)
    pct = row_normalized(cm)
    fig = _figure(len(class_names))
    ax = fig.add_subplot()
    image = ax.imshow(pct, cmap="Blues", vmin=0.0, vmax=100.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of the true class")
    if len(class_names) <= ANNOTATE_MAX:
        for (i, j), count in np.ndenumerate(cm):
            text, color = (f"{count}\n{pct[i, j]:.0f}%", "white" if pct[i, j] > 50 else "black") if count \
                else ("0", "lightgray")
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    _label_axes(ax, class_names)
    ax.set_title(title or f"confusion matrix ({int(cm.sum())} images)")
    fig.tight_layout()
    fig.savefig(path)


def plot_confusion_difference(diff, class_names: Sequence[str], path: str, title: str = "") -> None:
    """Heatmap of B − A counts on a diverging scale centred on zero (red: more in B, blue: fewer)."""
    diff = np.asarray(diff)
    bound = max(1, int(np.abs(diff).max()))
    fig = _figure(len(class_names))
    ax = fig.add_subplot()
    image = ax.imshow(diff, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="images (B − A)")
    if len(class_names) <= ANNOTATE_MAX:
        for (i, j), value in np.ndenumerate(diff):
            ax.text(j, i, f"{value:+d}" if value else "0", ha="center", va="center", fontsize=7)
    _label_axes(ax, class_names)
    ax.set_title(title or "confusion matrix difference (B − A)")
    fig.tight_layout()
    fig.savefig(path)


def plot_reliability(bins, ece: float, path: str, title: Optional[str] = None) -> None:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with the share of images below."""
    lower = np.array([b["lower"] for b in bins])
    width = np.array([b["upper"] - b["lower"] for b in bins])
    count = np.array([b["count"] for b in bins], dtype=np.float64)
    acc = np.array([b["accuracy"] if b["count"] else 0.0 for b in bins])
    conf = np.array([b["confidence"] if b["count"] else 0.0 for b in bins])
    fig = Figure(figsize=(6, 7), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(lower, acc, width=width, align="edge", edgecolor="black", color="tab:blue", label="accuracy")
    gap_base = np.minimum(acc, conf)
    top.bar(lower, np.abs(conf - acc) * (count > 0), bottom=gap_base, width=width, align="edge",
            color="tab:red", alpha=0.35, edgecolor="tab:red", label="gap to mean confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title or f"reliability ({len(bins)} bins), ECE = {ece:.4f}")
    total = max(count.sum(), 1.0)
    bottom.bar(lower, count / total, width=width, align="edge", color="gray", edgecolor="black")
    bottom.set_xlabel("confidence (top softmax probability)")
    bottom.set_ylabel("share of images")
    fig.tight_layout()
    fig.savefig(path)
