"""The slimming sweep as network slimming's Table 1: error, parameters and MACs per network and pruned share.

One line per (dataset, network, share pruned): the base and sparsity-trained errors, the test accuracy of the pruned
network before fine-tuning (the PyTorch repository's README reports it), the error after fine-tuning, and the pruned
network's parameters and MACs, each beside the paper's. The paper counts FLOPs as two per multiply-accumulate, so
its FLOPs are shown halved, as MACs. Errors are the tables' statistic (100 − the median of the last evaluations);
the original code reports the best test accuracy over its epochs, a more optimistic choice.
"""
import os
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from ..compress.init_prune import RECORD
from ..records import read_json
from .numbers import SLIMMING, SLIMMING_PRUNED_ACC, slimming_row

Key = Tuple[str, str]  # (dataset, network) or, for MixMatch's row, (dataset, its pipeline name)


def _mean(values: Sequence[float]) -> Optional[float]:
    return statistics.mean(values) if values else None


def pruned_records(cell) -> List[dict]:
    """init_prune.json of each seed's fine-tuning run of a cell."""
    found = []
    for run in cell.runs:
        record = read_json(os.path.join(run.folder, RECORD)) if run.folder else None
        if record:
            found.append(record)
    return found


def _stage(row: str) -> Tuple[str, Optional[float]]:
    """(pipeline name, pruned share or None) of a row such as preresnet-164-cifar10-pruned40 or ...-base."""
    name, _, stage = row.rpartition("-")
    return name, (int(stage[len("pruned"):]) / 100 if stage.startswith("pruned") else None)


def collect(cells: Sequence) -> Dict[str, dict]:
    """{pipeline name: {"base": error, "sparse": error, "pruned": {share: {...}}}} from the slimming table's cells."""
    out: Dict[str, dict] = {}
    for cell in (c for c in cells if c.table == "slimming"):
        name, share = _stage(cell.row)
        entry = out.setdefault(name, {"row": cell.row, "pruned": {}})
        error = _mean(cell.errors)
        if share is None:
            entry[cell.row.rpartition("-")[2]] = error
            continue
        records = pruned_records(cell)
        entry["pruned"][share] = {
            "error": error, "seeds": len(cell.runs),
            "acc_before_ft": _mean([r["test_acc"]["after"] for r in records if r["test_acc"]["after"] is not None]),
            "params": records[0]["params"] if records else None, "macs": records[0]["macs"] if records else None}
    return out


def _num(value: Optional[float], fmt: str = "{:.2f}") -> str:
    return fmt.format(value) if value is not None else "–"


def _millions(value: Optional[float]) -> str:
    return f"{value / 1e6:.2f} M" if value else "–"


def lines(collected: Dict[str, dict]) -> List[str]:
    """The markdown table's lines, the paper's number after each of ours (ours / paper)."""
    out = ["| network | pruned | error base | error sparse | acc. pruned, before fine-tuning | error fine-tuned | "
           "params | MACs |", "|---|---|---|---|---|---|---|---|"]
    for name, entry in collected.items():
        found = slimming_row(entry["row"])
        dataset, model = found[:2] if found else (None, None)
        paper_base, paper_pruned = SLIMMING.get((dataset, model), ((None, None, None), {}))
        for share, p in sorted(entry["pruned"].items()) or [(None, {})]:
            paper = paper_pruned.get(share, (None, None, None))
            readme = SLIMMING_PRUNED_ACC.get((dataset, model, share))
            before = p.get("params", {}) or {}
            macs = p.get("macs", {}) or {}
            out.append(
                f"| {name} | {_num(share and 100 * share, '{:.0f} %')} | {_num(entry.get('base'))} / "
                f"{_num(paper_base[0])} | {_num(entry.get('sparse'))} | {_num(p.get('acc_before_ft'))} / "
                f"{_num(readme)} | {_num(p.get('error'))} / {_num(paper[0])} | "
                f"{_millions(before.get('before'))} → {_millions(before.get('after'))} / "
                f"{_millions(paper_base[1])} → {_millions(paper[1])} | "
                f"{_millions(macs.get('before'))} → {_millions(macs.get('after'))} / "
                f"{_millions(paper_base[2] and paper_base[2] / 2)} → {_millions(paper[2] and paper[2] / 2)} |")
    return out


def render_slimming(cells: Sequence, root: str) -> Tuple[str, List[str]]:
    """Write ROOT/slimming.md; returns its text and the file (nothing when the cells hold no slimming run)."""
    collected = collect(cells)
    if not collected:
        return "", []
    text = "\n".join(["# Network slimming, Table 1 (ours / the paper's; MACs = the paper's FLOPs / 2)", "",
                      *lines(collected), ""])
    path = os.path.join(root, "slimming.md")
    with open(path, "w") as f:
        f.write(text)
    return text, [path]
