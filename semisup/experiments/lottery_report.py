"""A lottery's results: DIR/lottery.json, DIR/lottery.txt and DIR/lottery.png, rewritten after every run.

Each round's row holds its sparsity and the EMA test accuracy at the last step of the ticket and of both controls,
``null`` for a run that has not finished, so the files (and the figure) show partial results as they come.
"""
import os
from typing import Optional, Tuple

from ..records import replace_whole, write_json, write_text

KINDS = ("ticket", "reinit", "random")
STYLES = {"ticket": ("o-", "ticket: pruned, survivors rewound"),
          "reinit": ("s--", "reinit: same masks, fresh initialisation"),
          "random": ("^:", "random: random masks, same per-layer sparsity")}
JSON, TXT, PNG = "lottery.json", "lottery.txt", "lottery.png"


def title(settings: dict) -> Tuple[str, str]:
    """(what was trained, how it was pruned): the two lines above the table and the figure."""
    cfg = settings["config"]
    return (f"{cfg['model']}, {cfg['algorithm']}, {cfg['dataset']}@{cfg['n_labeled']}, {cfg['steps']} steps",
            f"{settings['prune_fraction']:.0%} of the surviving weights pruned per round ({settings['scope']}), "
            f"rewound to step {settings['rewind_step']}")


def row_sparsity(row: dict) -> float:
    """The measured sparsity, or the planned one for a round whose masks do not exist yet."""
    return row["sparsity"] if row["sparsity"] is not None else row["expected_sparsity"]


def _acc(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(record: dict) -> str:
    """lottery.txt: one line per round, sparsity and the three accuracies."""
    lines = ["Lottery tickets: " + "; ".join(title(record["settings"])),
             "EMA test accuracy (%) at the last step; '-': not run (yet)",
             f"{'round':>5}  {'sparsity':>9}  {'ticket':>7}  {'reinit':>7}  {'random':>7}"]
    for row in record["rounds"]:
        accs = "  ".join(f"{_acc(row[kind]):>7}" for kind in KINDS)
        lines.append(f"{row['round']:>5}  {row_sparsity(row):>8.2%}  {accs}")
    return "\n".join(lines) + "\n"


def plot(record: dict, path: str) -> None:
    """Accuracy against sparsity, one line per kind; the points not run yet are left out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for kind in KINDS:
        points = [(100 * row_sparsity(r), r[kind]) for r in record["rounds"] if r[kind] is not None]
        if points:
            style, label = STYLES[kind]
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("sparsity of the conv/linear weights (%)")
    ax.set_ylabel("EMA test accuracy (%)")
    ax.set_title("\n".join(title(record["settings"])), fontsize=8)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(record: dict, out: str) -> None:
    """lottery.json, lottery.txt and lottery.png in ``out``, each replaced whole."""
    write_json(record, os.path.join(out, JSON))
    write_text(format_table(record), os.path.join(out, TXT))
    replace_whole(lambda tmp: plot(record, tmp), os.path.join(out, PNG))
