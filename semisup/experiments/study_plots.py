"""The compression study rendered: study.md and accuracy against MACs, latency and parameters.

Accuracy is 100 − the tables' error (the median EMA test accuracy of a run's last evaluations), mean ± sample std
over the seeds found. MACs, parameters and latency come from each run's init_prune.json, written when the run
pruned its --init network. Weight pruning (magnitude, Taylor) keeps dense kernels: its MACs and latency are the
dense network's, and what it saves shows as nonzero parameters (what a sparse format stores), the axis of the
parameter picture for every method. Latency is shown relative to the dense network timed in the same process
(batch 256), which a busy machine changes far less than the milliseconds themselves. The MixMatch − supervised
gain is taken seed by seed (both fine-tunings start from the same pruned network) before its mean and spread.
"""
import os
import statistics
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from ..compress.init_prune import RECORD
from ..records import read_json
from .plots import pyplot

TABLE = "study"
AXES = (("macs", "MACs per image (millions)", 1e-6, "study_macs.png"),
        ("nonzero", "nonzero parameters (millions)", 1e-6, "study_params.png"),
        ("latency", "CPU latency at batch 256, relative to the dense network", 1.0, "study_latency.png"))
STYLE = {"mixmatch": ("-", "o", "MixMatch fine-tuning"), "supervised": ("--", "s", "supervised fine-tuning")}


def _row(row: str) -> Tuple[str, Optional[float], str]:
    """(method, ratio or None for dense, fine-tuning) of a row such as l1-filter-50-mixmatch or dense-supervised."""
    head, _, finetune = row.rpartition("-")
    if head == "dense":
        return "dense", None, finetune
    method, _, pct = head.rpartition("-")
    return method, int(pct) / 100, finetune


def _stats(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _costs(records: List[dict]) -> dict:
    """Mean sizes, latency ratio and accuracies before fine-tuning over the seeds' init_prune.json."""
    def mean(get):
        values = [get(r) for r in records]
        return statistics.mean(values) if values and None not in values else None

    latency = [r["latency_ms"]["batch_256"] for r in records]
    return {"macs": mean(lambda r: r["macs"]["after"]), "params": mean(lambda r: r["params"]["after"]),
            "nonzero": mean(lambda r: r["nonzero_params"]["after"]),
            "dense_macs": mean(lambda r: r["macs"]["before"]), "dense_params": mean(lambda r: r["params"]["before"]),
            "dense_nonzero": mean(lambda r: r["nonzero_params"]["before"]),
            "latency": statistics.mean(t["after"] / t["before"] for t in latency) if latency else None,
            "acc_pruned": mean(lambda r: r["test_acc"]["after"]), "acc_dense": mean(lambda r: r["test_acc"]["before"])}


def collect(cells: Sequence) -> Dict[Tuple[str, Optional[float]], dict]:
    """{(method, ratio): {"costs": …, "acc": {fine-tuning: {seed: accuracy}}}} from the study's cells."""
    out: Dict[Tuple[str, Optional[float]], dict] = defaultdict(lambda: {"acc": {}, "records": []})
    for cell in (c for c in cells if c.table == TABLE):
        method, ratio, finetune = _row(cell.row)
        entry = out[(method, ratio)]
        entry["acc"][finetune] = {r.seed: 100.0 - r.error for r in cell.runs}
        entry["records"] += [rec for rec in (read_json(os.path.join(r.folder, RECORD)) for r in cell.runs) if rec]
    for entry in out.values():
        records = entry.pop("records")
        entry["costs"] = _costs(records) if records else {}
    if ("dense", None) in out:  # the dense rows prune nothing: their sizes are the pruned runs' "before"
        pruned = [e["costs"] for key, e in out.items() if key[0] != "dense" and e["costs"]]
        out[("dense", None)]["costs"] = {key: statistics.mean(c[key] for c in pruned) for key in
                                         ("dense_macs", "dense_params", "dense_nonzero", "acc_dense")} \
            if pruned else {}
    return dict(out)


def gain(entry: dict) -> Tuple[Optional[float], Optional[float], int]:
    """MixMatch − supervised fine-tuning, paired by seed: (mean, std, seeds)."""
    mm, sup = entry["acc"].get("mixmatch", {}), entry["acc"].get("supervised", {})
    diffs = [mm[s] - sup[s] for s in sorted(set(mm) & set(sup))]
    return (*_stats(diffs), len(diffs))


def _f(value: Optional[float], fmt: str = "{:.2f}") -> str:
    return fmt.format(value) if value is not None else "–"


def _pm(values: Dict[int, float]) -> str:
    mean, std = _stats(list(values.values()))
    return f"{_f(mean)} ± {_f(std)}" if std is not None else _f(mean)


def markdown(collected: dict) -> str:
    lines = ["# Compression study: accuracy after fine-tuning (mean ± std over seeds)", "",
             "| method | pruned | MACs | params (nonzero) | latency b256 | acc. before fine-tuning | "
             "MixMatch fine-tuning | supervised fine-tuning | MixMatch − supervised (paired) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (method, ratio), entry in sorted(collected.items(), key=lambda kv: (kv[0][0] != "dense", kv[0][0],
                                                                             kv[0][1] or 0)):
        c = entry["costs"]
        mean, std, n = gain(entry)
        dense = method == "dense"
        lines.append(
            f"| {method} | {_f(ratio and 100 * ratio, '{:.0f} %') if not dense else '0 %'} | "
            f"{_f(c.get('dense_macs' if dense else 'macs'), '{:,.0f}')} | "
            f"{_f(c.get('dense_params' if dense else 'params'), '{:,.0f}')} "
            f"({_f(c.get('dense_nonzero' if dense else 'nonzero'), '{:,.0f}')}) | "
            f"{_f(1.0 if dense else c.get('latency'), '{:.2f}x')} | "
            f"{_f(c.get('acc_dense' if dense else 'acc_pruned'))} | {_pm(entry['acc'].get('mixmatch', {}))} | "
            f"{_pm(entry['acc'].get('supervised', {}))} | "
            f"{_f(mean, '{:+.2f}')}{' ± ' + _f(std) if std is not None else ''} ({n} seeds) |")
    return "\n".join(lines) + "\n"


def _series(collected: dict, method: str, finetune: str, key: str, scale: float):
    points = []
    for (m, _), entry in collected.items():
        accs = entry["acc"].get(finetune)
        if m != method or not accs or entry["costs"].get(key) is None:
            continue
        mean, std = _stats(list(accs.values()))
        points.append((entry["costs"][key] * scale, mean, std or 0.0))
    return sorted(points)


def plot(collected: dict, key: str, label: str, scale: float, path: str) -> None:
    """One picture: accuracy against one cost, a line per (method, fine-tuning), the dense network marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    methods = sorted({m for m, _ in collected if m != "dense"})
    colors = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for method in methods:
        for finetune, (line, marker, name) in STYLE.items():
            points = _series(collected, method, finetune, key, scale)
            if points:
                x, y, err = zip(*points)
                ax.errorbar(x, y, yerr=err, ls=line, marker=marker, color=colors[method], capsize=3,
                            label=f"{method}, {name}")
    dense = collected.get(("dense", None))
    if dense and dense["costs"]:
        x = 1.0 if key == "latency" else dense["costs"][f"dense_{key}"] * scale
        ax.plot([x], [dense["costs"]["acc_dense"]], "k*", ms=12, label="dense (the checkpoint)")
        for finetune, (_, marker, name) in STYLE.items():
            accs = dense["acc"].get(finetune)
            if accs:
                ax.plot([x], [statistics.mean(accs.values())], marker, color="black", mfc="none", ms=9,
                        label=f"dense, {name}")
    ax.set_xlabel(label)
    ax.set_ylabel("test accuracy % (EMA)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render_study(cells: Sequence, root: str) -> Tuple[str, List[str]]:
    """Write ROOT/study.md and the three pictures; nothing when the cells hold no study run."""
    collected = collect(cells)
    if not collected:
        return "", []
    text = markdown(collected)
    files = [os.path.join(root, "study.md")]
    with open(files[0], "w") as f:
        f.write(text)
    for key, label, scale, name in AXES:
        files.append(os.path.join(root, name))
        plot(collected, key, label, scale, files[-1])
    return text, files
