"""What a run writes and how it is read back: JSON files, metrics.jsonl lines, and the paper's statistic.

Every file is strict JSON (NaN and infinities are written as null), and whole files are written through a
temporary file and a rename, so readers never see one half-written. Nothing here imports torch: the sweep and the
tables read runs without it.
"""
import json
import math
import os
import statistics
from typing import Callable, List, Sequence, Tuple

PAPER_METRIC = "test_acc_ema"  # the paper reports the EMA model's test accuracy


def _clean(obj):
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def json_line(record: dict) -> str:
    """One metrics.jsonl line: strict JSON, NaN written as null."""
    return json.dumps(_clean(record)) + "\n"


def write_json(obj, path: str) -> None:
    """Write ``obj`` to ``path`` through a temporary file and a rename."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_clean(obj), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def replace_whole(save: Callable[[str], None], path: str) -> None:
    """``save(tmp)``, then rename ``tmp`` to ``path``: for files another library writes (a figure), so readers
    never see one half-written. The temporary name keeps the extension, from which matplotlib takes the format."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp{ext}"
    save(tmp)
    os.replace(tmp, path)


def write_text(text: str, path: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    def save(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
    replace_whole(save, path)


def read_json(path: str):
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_metrics(path: str) -> List[dict]:
    """The evaluations in a metrics.jsonl; a line cut short by a kill is ignored."""
    history = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and PAPER_METRIC in record and "step" in record:
                    history.append(record)
    except OSError:
        return []
    return history


def median_of_last(history: Sequence[dict], n_last: int, metric: str = PAPER_METRIC) -> Tuple[float, int]:
    """(median ``metric`` of the last ``n_last`` evaluations, how many evaluations that used): the paper's
    statistic for ``test_acc_ema``. NaN (missing data) when there are none."""
    values = [h[metric] for h in history][-n_last:]
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, 0
    return statistics.median(values), len(values)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def model_selection(history: Sequence[dict]) -> dict:
    """Beside the paper's statistic, the other ways a reported model could be chosen, each named for what it is.

    ``test_acc_ema_at_best_valid``: the EMA test accuracy at the evaluation with the best EMA validation accuracy
    (honest model selection; None without a validation set). ``test_acc_ema_final``: the last evaluation's.
    ``test_acc_ema_best_optimistic``: the best EMA test accuracy of any evaluation, i.e. a model picked on the
    test set; an optimistic number, never a headline.
    """
    valid = [h for h in history if _finite(h.get("valid_acc_ema"))]
    best_valid = max(valid, key=lambda h: h["valid_acc_ema"]) if valid else None
    tests = [h[PAPER_METRIC] for h in history if _finite(h.get(PAPER_METRIC))]
    return {"test_acc_ema_at_best_valid": best_valid[PAPER_METRIC] if best_valid else None,
            "best_valid_step": best_valid["step"] if best_valid else None,
            "test_acc_ema_final": history[-1][PAPER_METRIC] if history else None,
            "test_acc_ema_best_optimistic": max(tests) if tests else None}


def cost(history: Sequence[dict]) -> dict:
    """Measured cost: wall-clock seconds of training and evaluation over every attempt of the run, mean seconds
    per step and training images per second (over the logged windows)."""
    steps = [h["step"] - (history[i - 1]["step"] if i else 0) for i, h in enumerate(history)]
    timed = [(n, h["sec_per_step"]) for n, h in zip(steps, history) if _finite(h.get("sec_per_step"))]
    total_steps = sum(n for n, _ in timed)
    mean_step = sum(n * s for n, s in timed) / total_steps if total_steps else None
    rates = [h["img_per_sec"] for h in history if _finite(h.get("img_per_sec"))]
    return {"wall_clock_s": history[-1].get("elapsed_s") if history else None, "mean_step_s": mean_step,
            "img_per_sec": statistics.median(rates) if rates else None}


def summary(history: Sequence[dict], n_last: int, run: dict = None) -> dict:
    """summary.json: the paper's statistic and its error, the evaluations it used, the last step, the other model
    selections (``model_selection``), and what the run cost where it ran (``run``: device, precision)."""
    med, used = median_of_last(history, n_last)
    return {"median_test_acc_ema_last": med, "error": 100.0 - med, "n_evals_used": used,
            "step": history[-1]["step"] if history else 0, **model_selection(history), **(run or {}),
            **cost(history)}
