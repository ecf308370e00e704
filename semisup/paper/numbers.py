"""The MixMatch paper's CIFAR-10 numbers (Berthelot et al., 2019), as data: test error in percent.

Table 4 (ablations) is one run per row (one labeled split); the label sweep is mean ± std over five splits. Both
report the median test error of the EMA model over the last 20 evaluations of a 1,048,576-step run.
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


def paper_error(table: str, row: str, labels: int) -> Optional[Tuple[float, Optional[float]]]:
    """(error %, std or None) the paper reports for this table cell, or None where it reports nothing."""
    if table == "table4" and row in TABLE4 and labels in TABLE4_LABELS:
        return TABLE4[row][TABLE4_LABELS.index(labels)], None
    if table == "labels" and row == "mixmatch" and labels in LABELS:
        return LABELS[labels]
    return None
