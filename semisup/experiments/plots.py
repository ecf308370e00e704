"""Figures beside the rendered tables: error vs labels against the paper, and each table's learning curves."""
import math
import statistics
from collections import defaultdict
from typing import Sequence

from . import fixmatch_numbers as fm
from .numbers import COMPARISON, LABELS, PAPER_STEPS

CURVES = (("test_acc_ema", "EMA model", "-"), ("test_acc", "raw model", "--"))


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_labels(records: Sequence[dict], path: str) -> None:
    """Error vs number of labels: the ``labels`` table (and ``supervised``, if run) with the paper's curve, from
    the tables' cell records."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    n = sorted(LABELS)
    ax.errorbar(n, [LABELS[k][0] for k in n], yerr=[LABELS[k][1] for k in n], fmt="o--", color="gray",
                capsize=3, label=f"paper ({PAPER_STEPS:,} steps, 5 seeds)")
    for table, style in (("labels", "s-"), ("supervised", "^-")):
        recs = sorted((r for r in records if r["table"] == table), key=lambda r: r["labels"])
        if not recs:
            continue
        ax.errorbar([r["labels"] for r in recs], [r["error_mean"] for r in recs],
                    yerr=[r["error_std"] or 0.0 for r in recs], fmt=style, capsize=3,
                    label=f"{'MixMatch' if table == 'labels' else 'supervised'} here (up to "
                          f"{max(r['steps_max'] for r in recs):,} steps, {max(r['seeds'] for r in recs)} seed(s))")
    ax.set_xscale("log")
    ax.set_xticks(n, [str(k) for k in n])
    ax.minorticks_off()
    ax.set_xlabel("labeled images")
    ax.set_ylabel("test error (%)")
    ax.set_title("CIFAR-10, WRN-28-2: error vs number of labels")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FIGURES = {"table5": "Figure 2: CIFAR-10", "table6": "Figure 3: SVHN", "table7": "SVHN+extra (Table 7)"}


def plot_comparison(records: Sequence[dict], table: str, path: str) -> None:
    """Error vs labels per method (the paper's Figures 2 and 3): each method measured here (solid, ± std over its
    seeds) beside the paper's values (dashed, the same colour), from the tables' cell records."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    recs = [r for r in records if r["table"] == table]
    for i, row in enumerate(dict.fromkeys([*COMPARISON[table], *(r["row"] for r in recs)])):
        color = f"C{i % 10}"
        paper = COMPARISON[table].get(row, {})
        if paper:
            n = sorted(paper)
            ax.errorbar(n, [paper[k][0] for k in n], yerr=[paper[k][1] for k in n], fmt="o--", color=color,
                        alpha=0.5, capsize=2)
        mine = sorted((r for r in recs if r["row"] == row and r["labels"] > 0),  # 0: every label, off the axis
                      key=lambda r: r["labels"])
        if mine:
            ax.errorbar([r["labels"] for r in mine], [r["error_mean"] for r in mine],
                        yerr=[r["error_std"] or 0.0 for r in mine], fmt="s-", color=color, capsize=3)
        ax.plot([], [], color=color, label=row)
    ax.plot([], [], "k--", alpha=0.5, label=f"paper ({PAPER_STEPS:,} steps, 5 seeds)")
    ax.plot([], [], "k-", label=f"here (up to {max((r['steps_max'] for r in recs), default=0):,} steps)")
    n = sorted(LABELS)
    ax.set_xscale("log")
    ax.set_xticks(n, [str(k) for k in n])
    ax.minorticks_off()
    ax.set_xlabel("labeled images")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{FIGURES[table]}, WRN-28-2: error vs number of labels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


PAPER_TITLES = {fm.TABLE: "FixMatch paper, Table 2", "flexmatch": "FlexMatch paper, Table 1 (FreeMatch, SoftMatch)"}


def plot_paper_table(records: Sequence[dict], path: str, nums=fm, title: str = PAPER_TITLES[fm.TABLE]) -> None:
    """A paper table of error against labels (``nums``: ``fixmatch_numbers``, FixMatch's Table 2, or
    ``adaptive_numbers``, FlexMatch's Table 1) as pictures: one line per method, one panel per dataset, measured here
    (solid, ± std over seeds) beside the paper (dashed; open markers where no second source confirms it)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(nums.DATASETS), figsize=(4.2 * len(nums.DATASETS), 4.2))
    recs = [r for r in records if r["table"] == nums.TABLE]
    for ax, (dataset, (_, base_labels)) in zip(axes, nums.DATASETS.items()):
        extra = [n for (d, _), counts in nums.EXTRA_LABELS.items() if d == dataset for n in counts]
        labels = sorted(set(base_labels) | set(extra))
        for i, method in enumerate(nums.METHODS):
            color, paper = f"C{i % 10}", nums.CELLS.get((dataset, method), {})
            n = sorted(paper)
            if n:
                ax.errorbar(n, [paper[k][0] for k in n], yerr=[paper[k][1] or 0.0 for k in n], fmt="--",
                            color=color, alpha=0.5, capsize=2)
                for confirmed in (True, False):
                    at = [k for k in n if paper[k][2] == confirmed]
                    ax.scatter(at, [paper[k][0] for k in at], edgecolors=color, alpha=0.6,
                               facecolors=color if confirmed else "none")
            mine = sorted((r for r in recs if r["row"] == nums.row_name(dataset, method)), key=lambda r: r["labels"])
            if mine:
                ax.errorbar([r["labels"] for r in mine], [r["error_mean"] for r in mine],
                            yerr=[r["error_std"] or 0.0 for r in mine], fmt="s-", color=color, capsize=3)
            ax.plot([], [], color=color, label=method)
        ax.set_xscale("log")
        ax.set_xticks(labels, [str(k) for k in labels])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(plt.matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(plt.matplotlib.ticker.NullFormatter())
        ax.set_xlabel("labeled images")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test error (%)")
    axes[0].plot([], [], "k--", alpha=0.5, label="paper (open: unverified)")
    axes[0].plot([], [], "k-", label="here")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}: error vs number of labels")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean_and_spread(histories: Sequence[Sequence[dict]], metric: str):
    """(steps, mean, min, max) of ``metric`` over runs at the steps every run logged (NaN and None left out)."""
    by_step = defaultdict(list)
    for history in histories:
        for h in history:
            value = h.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                by_step[h["step"]].append(value)
    steps = sorted(s for s, v in by_step.items() if len(v) == len(histories))
    return (steps, [statistics.mean(by_step[s]) for s in steps], [min(by_step[s]) for s in steps],
            [max(by_step[s]) for s in steps])


def _threshold(record: dict):
    """The threshold a curve shows: the global one where the algorithm has it, else the mean over classes."""
    if "threshold" in record:
        return record["threshold"]
    per_class = record.get("class_threshold")
    return statistics.mean(per_class) if per_class else None


# The panels of a learning-curve figure: (y label, [(metric or function of a record, label, style)]); the last two
# appear for runs that log how many unlabeled rows pass (FixMatch and the adaptive thresholds).
PANELS = (("test accuracy (%)", [(m, which, style) for m, which, style in CURVES]),
          ("unlabeled rows passing (SoftMatch: mean weight)", [("pass_rate", "", "-")]),
          ("threshold (global, or mean over classes)", [(_threshold, "", "-")]))


def _series(histories, metric):
    if callable(metric):
        histories = [[{"step": h["step"], "value": metric(h)} for h in history] for history in histories]
        metric = "value"
    return mean_and_spread(histories, metric)


def _against_time(ax, cells: Sequence, rows: Sequence[str], labels: Sequence[int], styles: Sequence[str]) -> None:
    """EMA test accuracy against the runs' own elapsed seconds (training and evaluation), mean over seeds."""
    for cell in cells:
        histories = [r.history for r in cell.runs if r.history]
        steps, seconds, _, _ = mean_and_spread(histories, "elapsed_s")
        acc_steps, acc, _, _ = mean_and_spread(histories, "test_acc_ema")
        by_step = dict(zip(acc_steps, acc))
        points = [(t, by_step[s]) for s, t in zip(steps, seconds) if s in by_step]
        if points:
            ax.plot(*zip(*points), styles[labels.index(cell.labels) % len(styles)], marker="o", markersize=3,
                    color=f"C{rows.index(cell.row) % 10}")
    ax.set_xlabel("wall time (s, training and evaluation)")
    ax.set_ylabel("EMA test accuracy (%)")
    ax.grid(alpha=0.3)


def plot_curves(cells: Sequence, table: str, path: str) -> None:
    """Test accuracy against steps for every row@labels of ``table``: EMA (solid) and raw (dashed) model, the
    mean over seeds as a line and the spread between seeds (min to max) as a band. A table whose runs log a pass
    rate gets ``plot_threshold_curves`` instead."""
    chosen = [c for c in cells if c.table == table]
    if any("pass_rate" in h for c in chosen for r in c.runs for h in r.history):
        plot_threshold_curves(chosen, table, path)
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, cell in enumerate(chosen):
        color = f"C{i % 10}"
        histories = [r.history for r in cell.runs if r.history]
        for metric, which, style in CURVES:
            steps, mean, low, high = mean_and_spread(histories, metric)
            if not steps:
                continue
            ax.plot(steps, mean, style, color=color,
                    label=f"{cell.row}@{cell.labels} {which} ({len(histories)} seed(s))")
            if len(histories) > 1:
                ax.fill_between(steps, low, high, color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{table}: learning curves (line: mean over seeds, band: min to max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_threshold_curves(cells: Sequence, table: str, path: str) -> None:
    """Four panels for rows that learn a threshold: the EMA test accuracy against steps, the pass rate, the
    threshold, and the accuracy against wall time; a colour per row, a line style per label count, the mean over
    seeds (band: min to max)."""
    plt = pyplot()
    rows = list(dict.fromkeys(c.row for c in cells))
    labels = sorted({c.labels for c in cells})
    styles = ("--", "-", ":", "-.")
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    metrics = ((axes[0][0], CURVES[0][0], "EMA test accuracy (%)"), (axes[0][1],) + PANELS[1][1][0][:1]
               + (PANELS[1][0],), (axes[1][0],) + PANELS[2][1][0][:1] + (PANELS[2][0],))
    for cell in cells:
        color, style = f"C{rows.index(cell.row) % 10}", styles[labels.index(cell.labels) % len(styles)]
        histories = [r.history for r in cell.runs if r.history]
        for ax, metric, _ in metrics:
            steps, mean, low, high = _series(histories, metric)
            if steps:
                ax.plot(steps, mean, style, color=color, label=f"{cell.row}@{cell.labels} ({len(histories)})")
                if len(histories) > 1:
                    ax.fill_between(steps, low, high, color=color, alpha=0.12, linewidth=0)
    for ax, _, ylabel in metrics:
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    _against_time(axes[1][1], cells, rows, labels, styles)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", fontsize=8, title="row@labels (seeds)")
    fig.suptitle(f"{table}: learning curves, pass rates and thresholds (line: mean over seeds, band: min to max)")
    fig.tight_layout(rect=(0, 0, 0.83, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
