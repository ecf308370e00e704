"""Sweep folders → the paper's tables, beside the paper's numbers.

Each run's error is the paper's statistic: 100 − the median EMA test accuracy of its last ``n_eval_last`` (20)
evaluations, read from metrics.jsonl (or summary.json when there is no metrics file). A table cell is the mean ±
sample standard deviation of that error over the seeds found, with the number of seeds and the steps actually run,
so that a short run is never mistaken for one of the paper's 1,048,576-step runs.
"""
import argparse
import csv
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..records import median_of_last, read_json, read_metrics
from .numbers import PAPER_STEPS, paper_error
from .sweep import TABLES

ROW_DIR = re.compile(r"^(?P<row>.+)@(?P<labels>\d+)$")
SEED_DIR = re.compile(r"^seed(?P<seed>\d+)$")
METRICS = {"test_acc_ema": "EMA test accuracy", "test_acc": "raw-model test accuracy (not the paper's statistic)"}
CSV_COLUMNS = ("table", "row", "labels", "error_mean", "error_std", "paper_error", "paper_std", "diff", "seeds",
               "steps_min", "steps_max", "paper_steps", "evals_min", "seed_errors")


@dataclass
class RunResult:
    table: str
    row: str
    labels: int
    seed: int
    error: float
    step: int
    n_evals: int
    n_last: int = 20  # the run's --n-eval-last: how many last evaluations its statistic may use


@dataclass
class Cell:
    table: str
    row: str
    labels: int
    runs: List[RunResult] = field(default_factory=list)

    @property
    def errors(self) -> List[float]:
        return [r.error for r in self.runs]

    @property
    def paper(self) -> Optional[Tuple[float, Optional[float]]]:
        return paper_error(self.table, self.row, self.labels)


def median_error(history: Sequence[dict], n_last: int, metric: str = "test_acc_ema") -> Tuple[float, int]:
    """(100 − median ``metric`` of the last ``n_last`` evaluations, how many evaluations that used)."""
    median, used = median_of_last(history, n_last, metric)
    return 100.0 - median, used


def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (n − 1); no deviation from a single value."""
    if not values:
        return math.nan, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def load_run(folder: str, table: str, row: str, labels: int, seed: int,
             metric: str = "test_acc_ema") -> Optional[RunResult]:
    config = read_json(os.path.join(folder, "config.json")) or {}
    history = read_metrics(os.path.join(folder, "metrics.jsonl"))
    n_last = int(config.get("n_eval_last", 20))
    if history:
        error, n_evals = median_error(history, n_last, metric)
        return RunResult(table, row, labels, seed, error, int(history[-1]["step"]), n_evals, n_last)
    summary = read_json(os.path.join(folder, "summary.json"))  # holds the EMA statistic only
    if not summary or "error" not in summary or metric != "test_acc_ema":
        return None
    return RunResult(table, row, labels, seed, float(summary["error"]), int(summary.get("step", 0)),
                     int(summary.get("n_evals_used", 0)), n_last)


def find_runs(root: str, metric: str = "test_acc_ema") -> List[RunResult]:
    """Every run under ``root`` laid out as <table>/<row>@<labels>/seed<k> (``root`` may be a table's folder)."""
    results = []
    for folder, _, _ in os.walk(root):
        seed, parent = SEED_DIR.match(os.path.basename(folder)), os.path.dirname(os.path.abspath(folder))
        row = ROW_DIR.match(os.path.basename(parent))
        if not (seed and row):
            continue
        table = os.path.basename(os.path.dirname(parent))
        result = load_run(folder, table, row["row"], int(row["labels"]), int(seed["seed"]), metric)
        if result is not None:
            results.append(result)
    return results


def _order(cell: Cell):
    tables = list(TABLES)
    rows = list(TABLES[cell.table].rows) if cell.table in TABLES else []
    return (tables.index(cell.table) if cell.table in tables else len(tables), cell.table,
            rows.index(cell.row) if cell.row in rows else len(rows), cell.row, cell.labels)


def aggregate(results: Iterable[RunResult]) -> List[Cell]:
    cells: Dict[Tuple[str, str, int], Cell] = {}
    for r in results:
        cells.setdefault((r.table, r.row, r.labels), Cell(r.table, r.row, r.labels)).runs.append(r)
    for cell in cells.values():
        cell.runs.sort(key=lambda r: r.seed)
    return sorted(cells.values(), key=_order)


def cell_record(cell: Cell) -> dict:
    mean, std = mean_std(cell.errors)
    paper = cell.paper
    steps = [r.step for r in cell.runs]
    return {"table": cell.table, "row": cell.row, "labels": cell.labels, "error_mean": mean, "error_std": std,
            "paper_error": paper[0] if paper else None, "paper_std": paper[1] if paper else None,
            "diff": mean - paper[0] if paper else None, "seeds": len(cell.runs), "steps_min": min(steps),
            "steps_max": max(steps), "paper_steps": PAPER_STEPS, "evals_min": min(r.n_evals for r in cell.runs),
            "seed_errors": " ".join(f"seed{r.seed}={r.error:.2f}" for r in cell.runs)}


def _pm(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _steps(rec: dict) -> str:
    lo, hi = rec["steps_min"], rec["steps_max"]
    span = f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"
    return f"{span} ({100 * hi / rec['paper_steps']:.3g}%)"


def to_markdown(cells: Sequence[Cell], metric: str = "test_acc_ema") -> str:
    which = METRICS[metric]
    out = []
    for table in dict.fromkeys(c.table for c in cells):
        n_last = sorted({r.n_last for c in cells if c.table == table for r in c.runs})
        out += [f"## {table}", "",
                f"Error % = 100 − median {which} of a run's last {'/'.join(map(str, n_last))} evaluations "
                f"(`evals`: how many there were); "
                f"mean ± sample std over the seeds found. `steps`: what was run, in percent of the paper's "
                f"{PAPER_STEPS:,} per run.", "",
                "| row | labels | error % | paper % | diff | seeds | steps | evals |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for cell in (c for c in cells if c.table == table):
            rec = cell_record(cell)
            diff = "—" if rec["diff"] is None else f"{rec['diff']:+.2f}"
            out.append(f"| {cell.row} | {cell.labels} | {_pm(rec['error_mean'], rec['error_std'])} | "
                       f"{_pm(rec['paper_error'], rec['paper_std'])} | {diff} | {rec['seeds']} | {_steps(rec)} | "
                       f"{rec['evals_min']} |")
        out.append("")
    return "\n".join(out)


def write_csv(cells: Sequence[Cell], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for cell in cells:
            rec = cell_record(cell)
            writer.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v)
                             for k, v in rec.items()})


def plot_labels(cells: Sequence[Cell], path: str) -> None:
    """Error vs number of labels: the ``labels`` table (and ``supervised``, if run) with the paper's curve."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .numbers import LABELS

    fig, ax = plt.subplots(figsize=(6, 4))
    n = sorted(LABELS)
    ax.errorbar(n, [LABELS[k][0] for k in n], yerr=[LABELS[k][1] for k in n], fmt="o--", color="gray",
                capsize=3, label=f"paper ({PAPER_STEPS:,} steps, 5 seeds)")
    for table, style in (("labels", "s-"), ("supervised", "^-")):
        ours = [c for c in cells if c.table == table]
        if not ours:
            continue
        recs = [cell_record(c) for c in sorted(ours, key=lambda c: c.labels)]
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


def render(root: str, metric: str = "test_acc_ema") -> Tuple[str, List[str]]:
    """Write table.md, table.csv (and labels.png) into ``root``; returns the markdown and the files written."""
    cells = aggregate(find_runs(root, metric))
    if not cells:
        raise FileNotFoundError(f"no runs under {root} (expected <table>/<row>@<labels>/seed<k>/metrics.jsonl)")
    text = to_markdown(cells, metric)
    files = [os.path.join(root, "table.md"), os.path.join(root, "table.csv")]
    with open(files[0], "w") as f:
        f.write(text)
    write_csv(cells, files[1])
    if any(c.table == "labels" for c in cells):
        files.append(os.path.join(root, "labels.png"))
        plot_labels(cells, files[-1])
    return text, files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tables.py", description=__doc__.split("\n\n")[0] + " Writes "
                                     "DIR/table.md, DIR/table.csv and, for the labels table, DIR/labels.png.")
    parser.add_argument("dir", help="a sweep folder (sweep.py --out), or one table's folder inside it")
    parser.add_argument("--metric", choices=list(METRICS), default="test_acc_ema",
                        help="test_acc_ema: the paper's statistic (default); test_acc: the raw model, for runs "
                             "too short for the EMA (decay 0.999: after n steps it still holds 0.999**n of the "
                             "initial weights)")
    args = parser.parse_args(argv)
    try:
        text, files = render(args.dir, args.metric)
    except FileNotFoundError as err:
        print(f"tables.py: error: {err}", file=sys.stderr)
        return 2
    print(text)
    print("wrote " + ", ".join(files))
    return 0
