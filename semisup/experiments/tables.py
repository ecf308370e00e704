"""Sweep folders → the paper's tables, beside the paper's numbers.

Each run's error is the paper's statistic: 100 − the median EMA test accuracy of its last ``n_eval_last`` (20)
evaluations, read from metrics.jsonl (or summary.json when there is no metrics file). A table cell is the mean ±
sample standard deviation of that error over the seeds found, with the number of seeds and the steps actually run,
so that a short run is never mistaken for one of the paper's 1,048,576-step runs.
"""
import csv
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..records import median_of_last, model_selection, read_json, read_metrics
from . import adaptive_numbers as am
from . import fixmatch_numbers as fm
from .equal_time import render_equal_time
from .numbers import PAPER_STEPS, SLIMMING_STEPS, paper_confirmed, paper_error, paper_steps
from .plots import FIGURES, PAPER_TITLES, plot_comparison, plot_curves, plot_labels, plot_paper_table
from .settings import TABLES
from .slimming_table import render_slimming
from .study_plots import render_study

ROW_DIR = re.compile(r"^(?P<row>.+)@(?P<labels>\d+)$")
SEED_DIR = re.compile(r"^seed(?P<seed>\d+)$")
METRICS = {"test_acc_ema": "EMA test accuracy", "test_acc": "raw-model test accuracy (not the paper's statistic)"}
CSV_COLUMNS = ("table", "row", "labels", "error_mean", "error_std", "paper_error", "paper_std", "paper_confirmed",
               "diff", "seeds",
               "steps_min", "steps_max", "paper_steps", "evals_min", "seed_errors", "final_error_mean",
               "best_valid_error_mean", "best_test_error_optimistic_mean", "precision", "n_valid", "device_hours")


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
    history: List[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # protocol, precision, model selections, measured cost (run_info)
    folder: str = ""  # the run folder (for what a table reads beside the metrics, e.g. init_prune.json)


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


def run_info(config: dict, summary: dict, history: Sequence[dict]) -> dict:
    """What a table says of a run beside its error: its protocol (held-out validation images), precision, the
    other model selections (errors, from ``records.model_selection``) and its measured device-hours."""
    chosen = model_selection(history) if history else summary
    precision = summary.get("precision") or {"none": "fp32"}.get(config.get("amp"), config.get("amp"))
    seconds = (history[-1].get("elapsed_s") if history else None) or summary.get("wall_clock_s")

    def error(key):
        value = chosen.get(key)
        return 100.0 - value if isinstance(value, (int, float)) else None

    averages = {True: "warm", False: "official"}.get(config.get("warm_averages"))
    return {"n_valid": config.get("n_valid"), "precision": precision, "averages": averages,
            "final_error": error("test_acc_ema_final"), "best_valid_error": error("test_acc_ema_at_best_valid"),
            "best_test_error_optimistic": error("test_acc_ema_best_optimistic"),
            "device_hours": seconds / 3600 if isinstance(seconds, (int, float)) else None}


def load_run(folder: str, table: str, row: str, labels: int, seed: int,
             metric: str = "test_acc_ema") -> Optional[RunResult]:
    config = read_json(os.path.join(folder, "config.json")) or {}
    summary = read_json(os.path.join(folder, "summary.json")) or {}
    history = read_metrics(os.path.join(folder, "metrics.jsonl"))
    n_last = int(config.get("n_eval_last", 20))
    info = run_info(config, summary, history)
    if history:
        error, n_evals = median_error(history, n_last, metric)
        return RunResult(table, row, labels, seed, error, int(history[-1]["step"]), n_evals, n_last, history, info,
                         folder)
    if "error" not in summary or metric != "test_acc_ema":  # summary.json holds the EMA statistic only
        return None
    return RunResult(table, row, labels, seed, float(summary["error"]), int(summary.get("step", 0)),
                     int(summary.get("n_evals_used", 0)), n_last, [], info, folder)


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


def _mean_of(cell: Cell, key: str) -> Optional[float]:
    values = [r.info.get(key) for r in cell.runs]
    return statistics.mean(values) if values and all(v is not None for v in values) else None


def _distinct(cell: Cell, key: str) -> str:
    return "/".join(sorted({str(r.info.get(key)) for r in cell.runs if r.info.get(key) is not None}))


def cell_record(cell: Cell) -> dict:
    mean, std = mean_std(cell.errors)
    paper = cell.paper
    steps = [r.step for r in cell.runs]
    hours = [r.info.get("device_hours") for r in cell.runs]
    return {"table": cell.table, "row": cell.row, "labels": cell.labels, "error_mean": mean, "error_std": std,
            "paper_error": paper[0] if paper else None, "paper_std": paper[1] if paper else None,
            "paper_confirmed": paper_confirmed(cell.table, cell.row, cell.labels) if paper else None,
            "diff": mean - paper[0] if paper else None, "seeds": len(cell.runs), "steps_min": min(steps),
            "steps_max": max(steps), "paper_steps": paper_steps(cell.table, cell.row),
            "evals_min": min(r.n_evals for r in cell.runs),
            "seed_errors": " ".join(f"seed{r.seed}={r.error:.2f}" for r in cell.runs),
            "final_error_mean": _mean_of(cell, "final_error"),
            "best_valid_error_mean": _mean_of(cell, "best_valid_error"),
            "best_test_error_optimistic_mean": _mean_of(cell, "best_test_error_optimistic"),
            "precision": _distinct(cell, "precision"), "n_valid": _distinct(cell, "n_valid"),
            "device_hours": sum(hours) if hours and all(h is not None for h in hours) else None}


def _pm(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _unconfirmed(rec: dict) -> str:
    """A mark beside a paper value that one secondary source gives and no second one confirms."""
    return " (unverified)" if rec["paper_confirmed"] is False else ""


def _steps(rec: dict) -> str:
    lo, hi = rec["steps_min"], rec["steps_max"]
    span = f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"
    return f"{span} ({100 * hi / rec['paper_steps']:.3g}%)"


def _opt(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.2f}"


def _hours(rec: dict) -> str:
    return "—" if rec["device_hours"] is None else f"{rec['device_hours']:.2g}"


def _paper_steps_text(table: str) -> str:
    if table == "slimming":
        return f"{SLIMMING_STEPS:,} (network slimming's recipe; the MixMatch rows {PAPER_STEPS:,})"
    return f"{PAPER_STEPS:,}"


def _header(table: str, cells: Sequence[Cell], which: str) -> List[str]:
    runs = [r for c in cells if c.table == table for r in c.runs]
    n_last = "/".join(map(str, sorted({r.n_last for r in runs})))
    n_valid = sorted({r.info.get("n_valid") for r in runs if r.info.get("n_valid") is not None})
    precision = sorted({r.info.get("precision") for r in runs if r.info.get("precision")})
    averages = sorted({r.info.get("averages") for r in runs if r.info.get("averages")})
    protocol = ("the official protocol (`dataset.seed@N-1`: no held-out validation, the unlabeled set is every "
                "non-labeled training image)" if n_valid == [0] else
                f"{'/'.join(map(str, n_valid)) or 'unknown'} validation images held out of the unlabeled set")
    return [f"## {table}", "",
            f"Error % = 100 − median {which} of a run's last {n_last} evaluations (`evals`: how many there were); "
            f"mean ± sample std over the seeds found. `steps`: what was run, in percent of the paper's "
            f"{_paper_steps_text(table)} per run. Protocol: {protocol}; "
            f"precision: {', '.join(precision) or 'unknown'}; "
            f"running averages: {', '.join(averages) or 'unknown'} (warm: TF's num_updates rule for the EMA and the "
            f"batch-norm statistics at the start, the official updates after 9,000 steps). "
            f"Beside it, as mean errors: `final` (the last evaluation), `best valid` (at the best EMA validation "
            f"accuracy, when there is a validation set) and `best test` (the best evaluation on the test set: "
            f"picked on the test set, optimistic, never the headline). `device-h`: measured, all seeds.", "",
            "| row | labels | error % | paper % | diff | seeds | steps | evals | final | best valid | best test "
            "(optimistic) | precision | device-h |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]


def gain_check(cells: Sequence[Cell], table: str = "quick") -> List[str]:
    """The CPU-scale reproduction's verdict: MixMatch's accuracy over the supervised baseline's on every seed, and
    whether each seed's gain exceeds twice the spread between seeds (the larger of the two rows' max − min)."""
    rows = {c.row: {r.seed: 100.0 - r.error for r in c.runs} for c in cells if c.table == table}
    mm, sup = rows.get("mixmatch", {}), rows.get("supervised", {})
    seeds = sorted(set(mm) & set(sup))
    if not seeds:
        return []
    gains = {s: mm[s] - sup[s] for s in seeds}
    spread = max(max(v.values()) - min(v.values()) for v in (mm, sup))
    lines = [f"- seed {s}: MixMatch {mm[s]:.2f} %, supervised {sup[s]:.2f} %, gain {gains[s]:+.2f} points"
             for s in seeds]
    holds = min(gains.values()) > 2 * spread
    return lines + [f"- spread between seeds {spread:.2f} points; every gain above twice the spread "
                    f"({2 * spread:.2f}): {'yes' if holds else 'no'}", ""]


def to_markdown(cells: Sequence[Cell], metric: str = "test_acc_ema") -> str:
    which = METRICS[metric]
    out = []
    for table in dict.fromkeys(c.table for c in cells):
        out += _header(table, cells, which)
        for cell in (c for c in cells if c.table == table):
            rec = cell_record(cell)
            diff = "—" if rec["diff"] is None else f"{rec['diff']:+.2f}"
            out.append(f"| {cell.row} | {cell.labels} | {_pm(rec['error_mean'], rec['error_std'])} | "
                       f"{_pm(rec['paper_error'], rec['paper_std'])}{_unconfirmed(rec)} | {diff} | {rec['seeds']} | "
                       f"{_steps(rec)} | "
                       f"{rec['evals_min']} | {_opt(rec['final_error_mean'])} | "
                       f"{_opt(rec['best_valid_error_mean'])} | {_opt(rec['best_test_error_optimistic_mean'])} | "
                       f"{rec['precision'] or '—'} | {_hours(rec)} |")
        out.append("")
        if table == "quick":
            out += gain_check(cells)
    return "\n".join(out)


def write_csv(cells: Sequence[Cell], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for cell in cells:
            rec = cell_record(cell)
            writer.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v)
                             for k, v in rec.items()})


def render(root: str, metric: str = "test_acc_ema") -> Tuple[str, List[str]]:
    """Write table.md, table.csv (and labels.png, table5-7.png) into ``root``; returns the markdown and the files
    written."""
    cells = aggregate(find_runs(root, metric))
    if not cells:
        raise FileNotFoundError(f"no runs under {root} (expected <table>/<row>@<labels>/seed<k>/metrics.jsonl)")
    text = to_markdown(cells, metric)
    files = [os.path.join(root, "table.md"), os.path.join(root, "table.csv")]
    with open(files[0], "w") as f:
        f.write(text)
    write_csv(cells, files[1])
    for extra in (render_slimming, render_study, render_equal_time):
        more_text, more_files = extra(cells, root)
        text, files = text + ("\n" + more_text if more_text else ""), files + more_files
    records = [cell_record(c) for c in cells]
    if any(c.table == "labels" for c in cells):
        files.append(os.path.join(root, "labels.png"))
        plot_labels(records, files[-1])
    for table in (t for t in FIGURES if any(c.table == t for c in cells)):
        files.append(os.path.join(root, f"{table}.png"))
        plot_comparison(records, table, files[-1])
    for nums in (n for n in (fm, am) if any(c.table == n.TABLE for c in cells)):
        files.append(os.path.join(root, f"{nums.TABLE}.png"))
        plot_paper_table(records, files[-1], nums, PAPER_TITLES[nums.TABLE])
    for table in dict.fromkeys(c.table for c in cells):
        if any(r.history for c in cells if c.table == table for r in c.runs):
            files.append(os.path.join(root, f"{table}_curves.png"))
            plot_curves(cells, table, files[-1])
    return text, files
