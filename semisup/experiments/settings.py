"""The paper's tables as sweeps: each table's rows (train.py flags), label counts, seeds and shared flags.

Every setting follows the official scripts (google-research/mixmatch ``runs/*.sh``); ``numbers.py`` holds the
paper's results and hyperparameters they come from, ``sweep.py`` turns a table into runs.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from . import adaptive_numbers as am
from . import fixmatch_numbers as fm
from . import numbers as paper

# The official ablation runs used λu = 100 and a 128-kimg ramp-up (not the 75 and 1024 kimg of the main results).
ABLATION_FLAGS = ("--lambda-u", f"{paper.ABLATION_LAMBDA_U:g}", "--rampup-kimg", str(paper.ABLATION_RAMPUP_KIMG))
# Table 4's ICT row is the official ict.py as runs/table4.sh runs it: consistency weight 1000, beta 0.75, and its own
# ramp (40 % of the run), so the ablation's --rampup-kimg is reset to 0 for it.
ICT_FLAGS = ("--algorithm", "ict", "--lambda-u", "1000", "--alpha", "0.75", "--rampup-kimg", "0")
# The official runs/*.sh protocol of every paper table, which a sweep follows unless the user passes the flag:
# `dataset.seed@N-1`, one validation image, so the unlabeled set is every non-labeled training image (here: no
# held-out validation set), and fp32 (the official code's precision; train.py's own default picks bf16 for speed).
PROTOCOL_FLAGS = (("--n-valid", "0"), ("--amp", "none"))


@dataclass(frozen=True)
class Table:
    rows: Dict[str, Tuple[str, ...]]  # row name → the train.py flags that make it
    labels: Tuple[int, ...]
    seeds: Tuple[int, ...]
    common: Tuple[str, ...] = field(default=())  # flags every row of the table gets
    steps: Optional[int] = None  # the table's own --steps (None: train.py's, the paper's 2^20)
    rampup_fraction: Optional[float] = None  # a schedule scaled to the run: λu ramps over this share of --steps ...
    n_evals: Optional[int] = None  # ... and the run evaluates this many times
    row_labels: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # a row's own labels (default: labels)
    label_seeds: Dict[int, Tuple[int, ...]] = field(default_factory=dict)  # a label count's own seeds (: seeds)
    starts_from: Dict[str, str] = field(default_factory=dict)  # row → the row whose last.pt it starts from (--init)

    def has(self, row: str, labels: int, seed: int) -> bool:
        """Whether the paper ran this cell (the large table's rows and STL-10's 5,000 labels are partial)."""
        return labels in self.row_labels.get(row, self.labels) and seed in self.label_seeds.get(labels, self.seeds)


def _f(value: float) -> str:
    return f"{value:g}"


# The paper's tables on the other datasets (google-research/mixmatch runs/*.sh): each row names its dataset.
DATASET_TABLES: Dict[str, Table] = {
    "large": Table(rows={row: ("--dataset", row, "--lambda-u", _f(paper.LARGE_LAMBDA_U[row])) for row in paper.LARGE},
                   labels=tuple(labels for labels, _ in paper.LARGE.values()), seeds=(1, 2, 3, 4, 5),
                   common=("--model", "wrn-28-large", "--wd", _f(paper.LARGE_WD)),
                   row_labels={row: (labels,) for row, (labels, _) in paper.LARGE.items()}),
    "stl10": Table(rows={"mixmatch": ("--dataset", "stl10", "--lambda-u", _f(paper.STL10_LAMBDA_U))},
                   labels=tuple(paper.STL10), seeds=(1, 2, 3, 4, 5), label_seeds={5000: (1,)}),
    "svhn": Table(rows={"mixmatch": ("--dataset", "svhn", "--lambda-u", _f(paper.SVHN_LAMBDA_U), "--alpha",
                                     _f(paper.SVHN_ALPHA))}, labels=tuple(paper.SVHN), seeds=(1, 2, 3, 4, 5)),
    "svhn-extra": Table(rows={"mixmatch": ("--dataset", "svhn-extra", "--lambda-u", _f(paper.SVHN_LAMBDA_U),
                                           "--alpha", _f(paper.SVHN_EXTRA_ALPHA))}, labels=tuple(paper.SVHN_EXTRA),
                        seeds=(1, 2, 3, 4, 5)),
}


# The CPU-scale reproduction (docs/paper-tables.md, "A CPU-scale reproduction"): MixMatch and the supervised
# baseline on the same 250 labels, steps and network, three seeds, in about 45 minutes on two CPU cores without
# AVX-512 (--parallel 2). WRN-16-1 because a WRN-28-2 step takes 3.7 s there (fp32): an hour would buy 150 steps
# per run. λu ramps over 4x the run (reaching 75/4 at its last step): a ramp as short as the run makes the network
# agree with its own early guesses, and a 120-step run with a 30-step ramp logged 10 % EMA test accuracy.
QUICK = Table(rows={"mixmatch": (), "supervised": ("--algorithm", "supervised")}, labels=(250,), seeds=(1, 2, 3),
              common=("--model", "wrn-16-1", "--amp", "auto", "--n-eval-last", "3"), steps=600,
              rampup_fraction=4.0, n_evals=6)

def _baselines(table: str, dataset: str, rows: Dict[str, Tuple[str, ...]]) -> Table:
    """A comparison table (runs/table5-7.sh): every method with its official weight decay, beta and weight on one
    dataset, 250-4000 labels, seeds 1-5; the fully supervised reference (fs_mixup) on every label: CIFAR-10's
    balanced split labels every training image but one per class (49,990 of 50,000), SVHN's unbalanced classes take
    --n-labeled 0 (every label)."""
    flags = {name: ("--algorithm", name, *row) if name != "mixmatch" else row for name, row in rows.items()}
    row_labels = {name: tuple(paper.LABELS) for name in rows}
    if table in paper.FULLY_SUPERVISED:
        flags["fully-supervised"] = ("--algorithm", "fs-mixup")
        row_labels["fully-supervised"] = (paper.FULLY_SUPERVISED[table][0],)
    labels = tuple(dict.fromkeys(n for row in row_labels.values() for n in row))
    return Table(rows=flags, labels=labels, seeds=(1, 2, 3, 4, 5), common=("--dataset", dataset),
                 row_labels=row_labels)


# runs/table6.sh (SVHN); table7.sh (SVHN+extra) differs in Mean Teacher's weight and MixMatch's beta.
SVHN_ROWS = {
    "pi-model": ("--wd", "0.2", "--lambda-u", "5"), "pseudo-label": ("--wd", "0.02", "--lambda-u", "2"),
    "mixup": ("--wd", "0.02", "--alpha", "0.25"), "vat": ("--wd", "0.02"),
    "mean-teacher": ("--wd", "0.02", "--lambda-u", "150"),
    "ict": ("--wd", "0.02", "--alpha", "0.5", "--lambda-u", "20"),
    "mixmatch": ("--wd", "0.02", "--alpha", "0.75", "--lambda-u", "250")}

# runs/table5.sh-table7.sh, method by method (their --smoothing is left out: the official SSL baselines never apply
# it; docs/algorithms.md). Unlisted settings are each algorithm's defaults, the official files' flag defaults.
COMPARISON_TABLES: Dict[str, Table] = {
    "table5": _baselines("table5", "cifar10", {
        "pi-model": ("--wd", "0.02", "--lambda-u", "20"), "pseudo-label": ("--wd", "0.02", "--lambda-u", "1"),
        "mixup": ("--wd", "0.02", "--alpha", "0.75"), "vat": ("--wd", "0.02"),
        "mean-teacher": ("--wd", "0.2", "--lambda-u", "50"), "ict": ("--wd", "0.02", "--alpha", "0.75",
                                                                     "--lambda-u", "1000"),
        "mixmatch": ("--wd", "0.02", "--alpha", "0.75", "--lambda-u", "75")}),
    "table6": _baselines("table6", "svhn", SVHN_ROWS),
    "table7": _baselines("table7", "svhn-extra", {**SVHN_ROWS, "mean-teacher": ("--wd", "0.02", "--lambda-u", "180"),
                                        "mixmatch": ("--wd", "0.02", "--alpha", "0.25", "--lambda-u", "250")}),
}

# The CPU-scale comparison (docs/algorithms.md): every algorithm and the supervised baseline on the same 250 CIFAR-10
# labels with QUICK's network and schedule: each algorithm keeps its own settings of table5 and its own ramp, as a
# share of the run for the baselines (MixMatch's λu ramps over 4x the run, as in QUICK).
COMPARE_QUICK = Table(rows={**{row: flags for row, flags in COMPARISON_TABLES["table5"].rows.items()
                               if row != "fully-supervised"}, "supervised": ("--algorithm", "supervised")},
                      labels=(250,), seeds=(1, 2, 3), common=QUICK.common, steps=QUICK.steps,
                      rampup_fraction=QUICK.rampup_fraction, n_evals=QUICK.n_evals)

# The 2020 methods (FixMatch with RandAugment and CTAugment, UDA, ReMixMatch) beside MixMatch and the supervised
# baseline at CPU scale (docs/algorithms.md): the same 250 CIFAR-10 labels and network as QUICK, each algorithm with
# its own official defaults and recipe, and the same CPU-scale changes for every row: a labeled batch of 32
# (FixMatch's unlabeled batch μ·32 = 224) for 300 steps, and the ramps counted in images (MixMatch's λu,
# ReMixMatch's w_match and w_kl) over 4x the run, as in QUICK.
COMPARE_2020 = Table(rows={"mixmatch": (), "supervised": ("--algorithm", "supervised"),
                           "fixmatch-ra": ("--algorithm", "fixmatch", "--strong-aug", "ra"),
                           "fixmatch-cta": ("--algorithm", "fixmatch", "--strong-aug", "cta"),
                           "uda": ("--algorithm", "uda"), "remixmatch": ("--algorithm", "remixmatch")},
                     labels=(250,), seeds=(1, 2, 3), common=(*QUICK.common, "--batch-size", "32"), steps=300,
                     rampup_fraction=QUICK.rampup_fraction, n_evals=3)

# The adaptive thresholds at CPU scale (docs/algorithms.md, README): FixMatch, FlexMatch, FreeMatch, SoftMatch,
# AdaMatch and Dash beside a supervised run with the same SGD recipe (so each gain is measured against its own
# optimizer), on real CIFAR-10 with QUICK's network; 250 labels on seeds 1-3 and 40 labels on seed 1. A labeled batch
# of 8 (the unlabeled batch μ·8 = 56) for 600 steps, four evaluations: on two AVX2 cores such a step takes about 0.45
# s with two runs at a time, and 240 steps had not moved FreeMatch's τ a fifth of the way from 1/C. Dash's schedule is
# scaled to the run as USB's is to 2^20 steps: ρ reaches ρ_min after about a sixth of the run (a 12-step warm-up,
# then a decay every 6 steps).
SUPERVISED_SGD = ("--algorithm", "supervised", *fm.RECIPE)
COMPARE_ADAPTIVE = Table(rows={"supervised-sgd": SUPERVISED_SGD, "fixmatch": ("--algorithm", "fixmatch"),
                               "flexmatch": ("--algorithm", "flexmatch"), "freematch": ("--algorithm", "freematch"),
                               "softmatch": ("--algorithm", "softmatch"), "adamatch": ("--algorithm", "adamatch"),
                               "dash": ("--algorithm", "dash", "--dash-warmup", "12", "--dash-every", "6")},
                         labels=(40, 250), seeds=(1, 2, 3), label_seeds={40: (1,)},
                         common=(*QUICK.common, "--batch-size", "8"), steps=600, n_evals=4)

# Network slimming's recipe (main.py): SGD, lr 0.1, momentum 0.9, weight decay 1e-4 in the gradient, batch 64, the
# rate divided by 10 at 50 % and 75 % of 160 epochs (125,000 steps of 64 of the 50,000 images), on every training
# label (the balanced split's all but one per class) and without an EMA (--ema-decay 0: the reported model is the
# trained one). The sparsity run adds s·sign(γ); fine-tuning prunes it (--init-prune slim) and trains again.
SLIM_RECIPE = ("--algorithm", "supervised", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9", "--wd-mode",
               "l2", "--wd", "1e-4", "--lr-schedule", "step", "--lr-milestones", "0.5,0.75", "--batch-size", "64",
               "--ema-decay", "0", "--steps", str(paper.SLIMMING_STEPS))
SLIM_LABELS = {"cifar10": 49990, "cifar100": 49900}
# The same pipeline for MixMatch's own network, trained by MixMatch on 4,000 labels with its official settings
# (Adam, λu 75, 2^20 steps), the slimming penalty on every batch-norm γ, and its blocks' inner channels pruned.
MIXMATCH_SLIM = ("mixmatch-wrn-28-2-cifar10", ("--dataset", "cifar10", "--model", "wrn-28-2"), 4000, 1e-4, (0.4, 0.6))


def _pipeline(name: str, flags: Tuple[str, ...], labels: int, s: float, ratios) -> Dict[str, tuple]:
    """A network's rows: base, sparsity training (s), and each pruned share fine-tuned from the sparse run."""
    rows = {f"{name}-base": flags, f"{name}-sparse": (*flags, "--slim-lambda", _f(s))}
    rows.update({f"{name}-pruned{round(100 * r)}": (*flags, "--init-prune", "slim", "--init-ratio", _f(r))
                 for r in ratios})
    return {row: (row_flags, labels, name) for row, row_flags in rows.items()}


def _slimming() -> Table:
    rows = {}
    for (dataset, model), (_, pruned) in paper.SLIMMING.items():
        rows.update(_pipeline(f"{model}-{dataset}", ("--dataset", dataset, "--model", model, *SLIM_RECIPE),
                              SLIM_LABELS[dataset], paper.SLIMMING_LAMBDA[model], sorted(pruned)))
    rows.update(_pipeline(*MIXMATCH_SLIM))
    return Table(rows={row: flags for row, (flags, _, _) in rows.items()},
                 labels=tuple(dict.fromkeys(labels for _, labels, _ in rows.values())), seeds=(1,),
                 row_labels={row: (labels,) for row, (_, labels, _) in rows.items()},
                 starts_from={row: f"{name}-sparse" for row, (_, _, name) in rows.items() if "-pruned" in row})


SLIMMING = _slimming()


def _fixmatch() -> Table:
    """The FixMatch paper's Table 2: every method on every dataset at the label counts the paper reports for it
    (not the Π-model, Pseudo-Label and Mean Teacher at 40 labels: "–" there), five folds each, all with FixMatch's
    recipe (``fixmatch_numbers``)."""
    rows, row_labels = {}, {}
    for dataset, (flags, labels) in fm.DATASETS.items():
        for method, method_flags in fm.METHODS.items():
            paper = fm.TABLE2.get((dataset, method), {})
            rows[fm.row_name(dataset, method)] = (*method_flags, *flags)  # the dataset's --wd wins
            row_labels[fm.row_name(dataset, method)] = tuple(n for n in labels if n in paper) or labels
    labels = tuple(sorted({n for counts in row_labels.values() for n in counts}))
    return Table(rows=rows, labels=labels, seeds=(1, 2, 3, 4, 5), row_labels=row_labels)


FIXMATCH = _fixmatch()


def _flexmatch() -> Table:
    """FlexMatch's Table 1 with the FreeMatch and SoftMatch rows (``adaptive_numbers``): every method on every
    dataset at the table's label counts (FreeMatch also at CIFAR-10's 10), three seeds, each method's own defaults
    (the FixMatch recipe)."""
    rows, row_labels = {}, {}
    for dataset, (flags, labels) in am.DATASETS.items():
        for method, method_flags in am.METHODS.items():
            rows[am.row_name(dataset, method)] = (*method_flags, *flags)
            row_labels[am.row_name(dataset, method)] = tuple(sorted(am.EXTRA_LABELS.get((dataset, method), ())
                                                                    + labels))
    labels = tuple(sorted({n for counts in row_labels.values() for n in counts}))
    return Table(rows=rows, labels=labels, seeds=(1, 2, 3), row_labels=row_labels)


FLEXMATCH = _flexmatch()

TABLES: Dict[str, Table] = {
    "table4": Table(rows={
        "mixmatch": (), "k1": ("--K", "1"), "k3": ("--K", "3"), "k4": ("--K", "4"), "no-sharpen": ("--no-sharpen",),
        "ema-guess": ("--ema-guess",), "no-mixup": ("--mixup", "none"), "mixup-labeled": ("--mixup", "labeled"),
        "mixup-unlabeled": ("--mixup", "unlabeled"), "mixup-separate": ("--mixup", "separate"), "ict": ICT_FLAGS,
    }, labels=paper.TABLE4_LABELS, seeds=(paper.TABLE4_SEED,), common=ABLATION_FLAGS),
    "labels": Table(rows={"mixmatch": ()}, labels=tuple(paper.LABELS), seeds=(1, 2, 3, 4, 5)),
    "supervised": Table(rows={"supervised": ("--algorithm", "supervised")}, labels=tuple(paper.LABELS),
                        seeds=(1, 2, 3, 4, 5)),
    **COMPARISON_TABLES,
    "quick": QUICK,
    "compare-quick": COMPARE_QUICK,
    "compare-2020": COMPARE_2020,
    "compare-adaptive": COMPARE_ADAPTIVE,
    "slimming": SLIMMING,
    fm.TABLE: FIXMATCH,
    am.TABLE: FLEXMATCH,
    **DATASET_TABLES,
}
