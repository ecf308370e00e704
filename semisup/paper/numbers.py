"""The MixMatch paper's numbers (Berthelot et al., 2019, arXiv:1905.02249), as data: test error in percent.

Table 4 (ablations) is one run per row (one labeled split); the label sweeps are mean ± std over five splits. All
report the median test error of the EMA model over the last 20 evaluations of a 1,048,576-step run. Sources:
CIFAR-10 labels: Figure 2 (tabulated in the appendix); large models: Table 1; STL-10: Table 2
(MixMatch's row; 5,000 labels is one run); SVHN and SVHN+extra: Table 3.
"""
from typing import Dict, Optional, Tuple

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
SVHN_ALL_LABELS, SVHN_EXTRA_ALL_LABELS = 2.59, 1.71  # every training label (no sweep runs these)
SVHN_LAMBDA_U = 250.0
SVHN_ALPHA, SVHN_EXTRA_ALPHA = 0.75, 0.25  # the official runs' beta: 0.25 with the extra images


def paper_error(table: str, row: str, labels: int) -> Optional[Tuple[float, Optional[float]]]:
    """(error %, std or None) the paper reports for this table cell, or None where it reports nothing."""
    if table == "table4" and row in TABLE4 and labels in TABLE4_LABELS:
        return TABLE4[row][TABLE4_LABELS.index(labels)], None
    if table == "labels" and row == "mixmatch" and labels in LABELS:
        return LABELS[labels]
    if table == "large" and row in LARGE and labels == LARGE[row][0]:
        return LARGE[row][1]
    by_labels = {"stl10": STL10, "svhn": SVHN, "svhn-extra": SVHN_EXTRA}.get(table, {})
    if row == "mixmatch" and labels in by_labels:
        return by_labels[labels]
    return None
