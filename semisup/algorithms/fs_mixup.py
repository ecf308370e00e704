"""The fully supervised MixUp of the official ``fully_supervised/fs_mixup.py`` (the paper's fully supervised
numbers): every labeled row mixed with the reversed batch, soft cross-entropy, weight decay 0.002, α 0.5."""
from typing import Sequence

import torch

from ..losses import draw_mix_lambda, mix_reversed
from .base import Models, Rows, one_hot
from .supervised import Supervised

NAME = "fs-mixup"
CLASS = "FullySupervisedMixUp"
SUMMARY = "supervised MixUp on the labeled images (fs_mixup: the paper's fully supervised rows, with every label)"
OPTIONS = {
    "alpha": (0.5, "MixUp Beta(alpha, alpha) parameter"),
}
DEFAULTS = {"wd": 0.002}


class FullySupervisedMixUp(Supervised):
    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor], models: Models) -> Rows:
        lam = draw_mix_lambda(len(x_lb), self.cfg.alpha)
        x_mix, t_mix = mix_reversed(x_lb, one_hot(y_lb, self.num_classes), lam)
        return Rows({"x": x_mix, "t": t_mix}, len(x_lb))
