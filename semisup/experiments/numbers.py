"""The MixMatch paper's numbers (Berthelot et al., 2019, arXiv:1905.02249), as data: test error in percent.

Table 4 (ablations) is one run per row (one labeled split); the label sweeps are mean ± std over five splits. All
report the median test error of the EMA model over the last 20 evaluations of a 1,048,576-step run. Sources:
CIFAR-10 labels: Figure 2 (tabulated in the appendix); large models: Table 1; STL-10: Table 2
(MixMatch's row; 5,000 labels is one run); SVHN and SVHN+extra: Table 3; the baselines beside MixMatch on CIFAR-10,
SVHN and SVHN+extra: appendix Tables 5, 6 and 7 (Figures 2 and 3).
"""
from typing import Dict, Optional, Tuple

from . import adaptive_numbers as am
from . import fixmatch_numbers as fm

PAPER_STEPS = 1 << 20  # optimizer steps per run (64 images per step, 2^26 images in all)
ABLATION_LAMBDA_U = 100.0  # the official ablation runs (ablation/ab_mixmatch.py): w_match = 100 ...
ABLATION_RAMPUP_KIMG = 128  # ... warmup_kimg = 128: 131,072 images, 2,048 steps at batch 64

# Table 4: row → error % at (250 labels, 4000 labels).
TABLE4: Dict[str, Tuple[float, float]] = {
    "mixmatch": (11.80, 6.00),
    "k1": (17.09, 8.06),
    "k3": (11.55, 6.23),
    "k4": (12.45, 5.88),
    "no-sharpen": (27.83, 10.59),
    "ema-guess": (11.86, 6.47),
    "no-mixup": (39.11, 10.97),
    "mixup-labeled": (32.16, 9.22),
    "mixup-unlabeled": (12.35, 6.83),
    "mixup-separate": (12.26, 6.50),
    "ict": (38.60, 6.81),
}
TABLE4_LABELS = (250, 4000)
TABLE4_SEED = 3  # the official ablations ran on split 3 ("the hardest one")

# Label sweep (WRN-28-2): labels → (mean error %, std over 5 splits).
LABELS: Dict[int, Tuple[float, float]] = {
    250: (11.08, 0.87),
    500: (9.65, 0.94),
    1000: (7.75, 0.32),
    2000: (7.03, 0.15),
    4000: (6.24, 0.06),
}

FULLY_SUPERVISED_ALL = 4.17  # WRN-28-2 trained on all 50,000 labeled images
LARGE_WRN_4000 = (4.95, 0.08)  # the 26M-parameter WRN-28 at 4000 labels

# Table 1, the 135-filter WRN-28: row (dataset) → (labels, (mean error %, std)).
LARGE: Dict[str, Tuple[int, Tuple[float, float]]] = {
    "cifar10": (4000, LARGE_WRN_4000),
    "cifar100": (10000, (25.88, 0.30)),
}
LARGE_WD = 0.04  # the large runs' weight decay (wd 0.02 elsewhere) ...
LARGE_LAMBDA_U = {"cifar10": 75.0, "cifar100": 150.0}  # ... and w_match per dataset

# Table 2, STL-10 (4-scale WRN): labels → (error %, std or None: 5,000 labels is one run on the whole train set).
STL10: Dict[int, Tuple[float, Optional[float]]] = {1000: (10.18, 1.46), 5000: (5.59, None)}
STL10_LAMBDA_U = 50.0

# Table 3, SVHN without and with the extra images: labels → (mean error %, std over 5 splits).
SVHN: Dict[int, Tuple[float, float]] = {
    250: (3.78, 0.26), 500: (3.64, 0.46), 1000: (3.27, 0.31), 2000: (3.04, 0.13), 4000: (2.89, 0.06),
}
SVHN_EXTRA: Dict[int, Tuple[float, float]] = {
    250: (2.22, 0.08), 500: (2.17, 0.07), 1000: (2.18, 0.06), 2000: (2.12, 0.03), 4000: (2.07, 0.05),
}
SVHN_ALL_LABELS, SVHN_EXTRA_ALL_LABELS = 2.59, 1.71  # every training label (table6/table7's fully-supervised rows)
SVHN_LAMBDA_U = 250.0
SVHN_ALPHA, SVHN_EXTRA_ALPHA = 0.75, 0.25  # the official runs' beta: 0.25 with the extra images


# Tables 5-7 (appendix B, arXiv 1905.02249): the baselines beside MixMatch, error % (mean ± std over 5 splits).
# Row names are the --algorithm names; ICT is scripted in runs/table5-7.sh but reported only in Table 4.
_COLUMNS = (250, 500, 1000, 2000, 4000)


def _by_labels(*cells: Tuple[float, float]) -> Dict[int, Tuple[float, float]]:
    return dict(zip(_COLUMNS, cells))


TABLE5: Dict[str, Dict[int, Tuple[float, float]]] = {
    "pi-model": _by_labels((53.02, 2.05), (41.82, 1.52), (31.53, 0.98), (23.07, 0.66), (17.41, 0.37)),
    "pseudo-label": _by_labels((49.98, 1.17), (40.55, 1.70), (30.91, 1.73), (21.96, 0.42), (16.21, 0.11)),
    "mixup": _by_labels((47.43, 0.92), (36.17, 1.36), (25.72, 0.66), (18.14, 1.06), (13.15, 0.20)),
    "vat": _by_labels((36.03, 2.82), (26.11, 1.52), (18.68, 0.40), (14.40, 0.15), (11.05, 0.31)),
    "mean-teacher": _by_labels((47.32, 4.71), (42.01, 5.86), (17.32, 4.00), (12.17, 0.22), (10.36, 0.25)),
    "mixmatch": LABELS,
}
TABLE6: Dict[str, Dict[int, Tuple[float, float]]] = {
    "pi-model": _by_labels((17.65, 0.27), (11.44, 0.39), (8.60, 0.18), (6.94, 0.27), (5.57, 0.14)),
    "pseudo-label": _by_labels((21.16, 0.88), (14.35, 0.37), (10.19, 0.41), (7.54, 0.27), (5.71, 0.07)),
    "mixup": _by_labels((39.97, 1.89), (29.62, 1.54), (16.79, 0.63), (10.47, 0.48), (7.96, 0.14)),
    "vat": _by_labels((8.41, 1.01), (7.44, 0.79), (5.98, 0.21), (4.85, 0.23), (4.20, 0.15)),
    "mean-teacher": _by_labels((6.45, 2.43), (3.82, 0.17), (3.75, 0.10), (3.51, 0.09), (3.39, 0.11)),
    "mixmatch": SVHN,
}
TABLE7: Dict[str, Dict[int, Tuple[float, float]]] = {
    "pi-model": _by_labels((13.71, 0.32), (10.78, 0.59), (8.81, 0.33), (7.07, 0.19), (5.70, 0.13)),
    "pseudo-label": _by_labels((17.71, 0.78), (12.58, 0.59), (9.28, 0.38), (7.20, 0.18), (5.56, 0.27)),
    "mixup": _by_labels((33.03, 1.29), (24.52, 0.59), (14.05, 0.79), (9.06, 0.55), (7.27, 0.12)),
    "vat": _by_labels((7.44, 1.38), (7.37, 0.82), (6.15, 0.53), (4.99, 0.30), (4.27, 0.30)),
    "mean-teacher": _by_labels((2.77, 0.10), (2.75, 0.07), (2.69, 0.08), (2.60, 0.04), (2.54, 0.03)),
    "mixmatch": SVHN_EXTRA,
}
COMPARISON = {"table5": TABLE5, "table6": TABLE6, "table7": TABLE7}
# The fully supervised references on every training label (fs_mixup, all.sh's "(in paper)" runs): 4.13 % in appendix
# B.1 (the text of section 4.2.2 says 4.17). Here the balanced split labels all CIFAR-10 images but one per class.
FULLY_SUPERVISED_LABELS = 49990
# SVHN's classes are not balanced, so its references label every training image: --n-labeled 0 (data.ALL_LABELS).
FULLY_SUPERVISED = {"table5": (FULLY_SUPERVISED_LABELS, 4.13), "table6": (0, SVHN_ALL_LABELS),
                    "table7": (0, SVHN_EXTRA_ALL_LABELS)}


# Network slimming (Liu et al., ICCV 2017), Table 1: (dataset, network) → (base error %, params, FLOPs) and, per share
# of channels pruned, the same after fine-tuning. The paper's FLOPs count a multiply-accumulate as two: MACs = FLOPs/2.
SLIMMING = {
    ("cifar10", "vgg19"): ((6.34, 20.04e6, 7.97e8), {0.7: (6.20, 2.30e6, 3.91e8)}),
    ("cifar10", "densenet-40"): ((6.11, 1.02e6, 5.33e8), {0.4: (5.19, 0.66e6, 3.81e8), 0.7: (5.65, 0.35e6, 2.40e8)}),
    ("cifar10", "preresnet-164"): ((5.42, 1.70e6, 4.99e8), {0.4: (5.08, 1.44e6, 3.81e8),
                                                            0.6: (5.27, 1.10e6, 2.75e8)}),
    ("cifar100", "vgg19"): ((26.74, 20.08e6, 7.97e8), {0.5: (26.52, 5.00e6, 5.01e8)}),
    ("cifar100", "densenet-40"): ((25.36, 1.06e6, 5.33e8), {0.4: (25.28, 0.66e6, 3.71e8),
                                                           0.6: (25.72, 0.46e6, 2.81e8)}),
    ("cifar100", "preresnet-164"): ((23.37, 1.73e6, 5.00e8), {0.4: (22.87, 1.46e6, 3.33e8),
                                                             0.6: (23.91, 1.21e6, 2.47e8)}),
}
SLIMMING_STEPS = 125_000  # the original recipe: 160 epochs of the 50,000 training images at batch 64
SLIMMING_LAMBDA = {"vgg19": 1e-4, "preresnet-164": 1e-5, "densenet-40": 1e-5}  # the sparsity s of each network
# The PyTorch repository's README: test accuracy % of the pruned network before fine-tuning (CIFAR-10).
SLIMMING_PRUNED_ACC = {("cifar10", "vgg19", 0.7): 32.54, ("cifar10", "preresnet-164", 0.4): 94.58,
                       ("cifar10", "preresnet-164", 0.6): 47.73, ("cifar10", "densenet-40", 0.4): 94.16}


def slimming_row(row: str) -> Optional[Tuple[str, str, Optional[float]]]:
    """(dataset, network, ratio or None for base/sparse) of a slimming-table row such as vgg19-cifar10-pruned70."""
    for dataset, model in SLIMMING:
        prefix = f"{model}-{dataset}-"
        if row.startswith(prefix):
            stage = row[len(prefix):]
            ratio = int(stage[len("pruned"):]) / 100 if stage.startswith("pruned") else None
            return dataset, model, ratio
    return None


def _slimming_error(row: str) -> Optional[Tuple[float, Optional[float]]]:
    found = slimming_row(row)
    if found is None or row.endswith("-sparse"):
        return None
    dataset, model, ratio = found
    base, pruned = SLIMMING[(dataset, model)]
    if ratio is None:
        return base[0], None
    return (pruned[ratio][0], None) if ratio in pruned else None


def paper_confirmed(table: str, row: str, labels: int) -> bool:
    """False for a paper value that only one secondary source gives (the FixMatch table's unverified cells)."""
    cell = _cell(table, row, labels)
    return cell[2] if cell else True


def _cell(table: str, row: str, labels: int):
    """A cell of the tables that mark unconfirmed numbers (FixMatch's Table 2, FlexMatch's Table 1)."""
    nums = {fm.TABLE: fm, am.TABLE: am}.get(table)
    return nums.table_cell(row, labels) if nums else None


def paper_steps(table: str, row: str) -> int:
    """The optimizer steps of the paper's run of this row: network slimming's recipe for its networks, else
    MixMatch's 2^20."""
    return SLIMMING_STEPS if table == "slimming" and slimming_row(row) else PAPER_STEPS


def paper_error(table: str, row: str, labels: int) -> Optional[Tuple[float, Optional[float]]]:
    """(error %, std or None) the paper reports for this table cell, or None where it reports nothing."""
    if table == "table4" and row in TABLE4 and labels in TABLE4_LABELS:
        return TABLE4[row][TABLE4_LABELS.index(labels)], None
    if table == "labels" and row == "mixmatch" and labels in LABELS:
        return LABELS[labels]
    if table == "large" and row in LARGE and labels == LARGE[row][0]:
        return LARGE[row][1]
    if table == "slimming":
        return _slimming_error(row)
    if table in (fm.TABLE, am.TABLE):
        cell = _cell(table, row, labels)
        return cell[:2] if cell else None
    if table in COMPARISON:
        if row == "fully-supervised" and labels == FULLY_SUPERVISED.get(table, (None,))[0]:
            return FULLY_SUPERVISED[table][1], None
        return COMPARISON[table].get(row, {}).get(labels)
    by_labels = {"stl10": STL10, "svhn": SVHN, "svhn-extra": SVHN_EXTRA}.get(table, {})
    if row == "mixmatch" and labels in by_labels:
        return by_labels[labels]
    return None
