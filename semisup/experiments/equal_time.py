"""Accuracy at equal steps and at equal wall time, with the pass rate, for a table whose rows learn a threshold.

A semi-supervised step costs several supervised ones (FixMatch's μ = 7 puts 15 images through the network per
labeled image), so "better than supervised" at equal steps can be "worse" at equal time. For every label count of a
table whose runs log ``pass_rate`` (FixMatch, UDA, the adaptive thresholds), this writes one line per row: the EMA
test accuracy at the last evaluation (equal steps), at the time budget T (equal wall time: the last evaluation at
or before T of the run's own ``elapsed_s``, training and evaluation), the seconds per step, and the pass rate at the
first and the last evaluation. T is the shortest run of the rows that log a pass rate, so every such run has an
evaluation within it; a row that finished sooner (a supervised run of the same steps) reads its final accuracy,
and a row given more steps (``supervised-sgd`` with ``--steps`` raised, in its own folder) shows what the same
time buys without unlabeled images.
"""
import os
import statistics
from collections import defaultdict
from typing import List, Optional, Sequence, Tuple


def at_time(history: Sequence[dict], seconds: float, metric: str = "test_acc_ema") -> Optional[float]:
    """``metric`` at the last evaluation whose elapsed time is at most ``seconds`` (None if none is)."""
    within = [h for h in history if h.get("elapsed_s") is not None and h["elapsed_s"] <= seconds + 1e-9]
    return within[-1].get(metric) if within else None


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _budget(cells: Sequence) -> Optional[float]:
    """The shortest total wall time of the runs that log a pass rate."""
    totals = [r.history[-1]["elapsed_s"] for c in cells for r in c.runs
              if r.history and "pass_rate" in r.history[-1] and r.history[-1].get("elapsed_s")]
    return min(totals) if totals else None


def _line(cell, budget: float) -> str:
    runs = [r for r in cell.runs if r.history]
    final = _mean(r.history[-1].get("test_acc_ema") for r in runs)
    timed = _mean(at_time(r.history, budget) for r in runs)
    per_step = _mean(r.history[-1]["elapsed_s"] / r.history[-1]["step"] for r in runs)
    first = _mean(r.history[0].get("pass_rate") for r in runs)
    last = _mean(r.history[-1].get("pass_rate") for r in runs)
    steps = runs[0].history[-1]["step"] if runs else 0
    return (f"| {cell.row} | {cell.labels} | {len(runs)} | {steps} | {_fmt(final)} | {_fmt(timed)} | "
            f"{_fmt(per_step, 3)} | {_fmt(first, 3)} → {_fmt(last, 3)} |")


def equal_time_lines(cells: Sequence) -> List[str]:
    """The markdown lines, per table and label count where some row logs a pass rate."""
    groups = defaultdict(list)
    for cell in cells:
        groups[(cell.table, cell.labels)].append(cell)
    lines = []
    for (table, labels), group in sorted(groups.items()):
        budget = _budget(group)
        if budget is None:
            continue
        lines += ["", f"### {table} at {labels} labels: equal steps and equal wall time (T = {budget:.0f} s)", "",
                  "| row | labels | seeds | steps | EMA test acc % (last eval) | at T | s per step (with evals) | "
                  "pass rate (first → last eval) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        lines += [_line(cell, budget) for cell in group]
    return lines


def render_equal_time(cells: Sequence, root: str) -> Tuple[str, List[str]]:
    """Write ROOT/equal_time.md; nothing when no run logs a pass rate."""
    lines = equal_time_lines(cells)
    if not lines:
        return "", []
    text = "\n".join(["## Equal steps and equal wall time", *lines, ""])
    path = os.path.join(root, "equal_time.md")
    with open(path, "w") as f:
        f.write(text)
    return text, [path]
