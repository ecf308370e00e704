"""The supervised baseline: cross-entropy on the labeled batch alone (no unlabeled views, no mixing)."""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .batch import Batch, rows
from .losses import soft_cross_entropy_sum


class Supervised:
    """The same model, augmentation, EMA, weight decay and steps as MixMatch, on the labeled images only."""

    unlabeled_views = 0

    def __init__(self, cfg, num_classes: int):
        self.num_classes = num_classes

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor],
              guess_model: nn.Module) -> Batch:
        return Batch(x_lb, F.one_hot(y_lb, self.num_classes).float(), len(x_lb), len(x_lb))

    def micro_batch(self, batch: Batch, index: int, count: int) -> Batch:
        return rows(batch, index, count)

    def loss(self, net: nn.Module, micro: Batch, autocast) -> Tuple[torch.Tensor, torch.Tensor]:
        with autocast():
            logits = net(micro.x)
        loss_x = soft_cross_entropy_sum(logits, micro.targets) / micro.full_n_lb
        return loss_x, torch.zeros_like(loss_x)
