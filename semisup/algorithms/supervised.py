"""The supervised baseline on the labeled images alone; with every label and ``--smoothing 0.001`` it is the
official ``fully_supervised/fs_baseline.py`` (cross-entropy against smoothed one-hot labels, one forward pass)."""
from typing import Dict, Sequence

import torch
import torch.nn as nn

from ..losses import soft_cross_entropy_sum
from .base import Algorithm, Models, Rows, one_hot

NAME = "supervised"
CLASS = "Supervised"
SUMMARY = "cross-entropy on the labeled images only (fs_baseline with every label and --smoothing 0.001)"
OPTIONS = {
    "smoothing": (0.0, "label smoothing s of the supervised term: (1 - s)·onehot + s/K (fs_baseline: 0.001; the "
                       "SSL baselines' official --smoothing is passed but never applied, so 0 is faithful there)"),
}


def labeled_loss(net: nn.Module, micro: Rows, autocast) -> torch.Tensor:
    """Cross-entropy of the labeled rows ``x`` against their targets ``t``, over the whole batch's rows. The first
    pass of every baseline: the one whose batch-norm statistics update the running averages."""
    with autocast():
        logits = net(micro["x"])
    return soft_cross_entropy_sum(logits, micro["t"]) / micro.full


class Supervised(Algorithm):
    """The same model, augmentation, EMA, weight decay and steps as MixMatch, on the labeled images only."""

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor], models: Models) -> Rows:
        return Rows({"x": x_lb, "t": one_hot(y_lb, self.num_classes, self.cfg.smoothing)}, len(x_lb))

    def loss(self, net: nn.Module, micro: Rows, autocast) -> Dict[str, torch.Tensor]:
        return {"x": labeled_loss(net, micro, autocast)}
