"""Interpolation Consistency Training (official ``ict.py``): the student's prediction on a mix of two unlabeled
images must match the same mix of the EMA teacher's predictions.

    p = sg[softmax f_ema(u)],  μ' = max(μ, 1 - μ), μ ~ Beta(α, α) per row
    loss_u = 1/(B·C) Σ (μ' p + (1 - μ') p[::-1] - softmax f(μ' u + (1 - μ') u[::-1]))²

One unlabeled view (the official data loader draws two and discards the second), the reversed batch as partner,
teacher probabilities (not logits) mixed, the labeled batch not mixed.
"""
from typing import Sequence

import torch

from ..losses import draw_mix_lambda, mix_reversed
from .base import Models, Rows, one_hot, teacher_probs
from .pi_model import PiModel

NAME = "ict"
CLASS = "ICT"
STEP_COST = 7  # teacher or guess forward 1, labeled and unlabeled forward + backward 3 each
SUMMARY = "ICT: the live model on mixed unlabeled images matches the mix of the EMA model's predictions"
NEEDS_EMA = True
RAMP_SHARE = 0.4  # the consistency weight ramps linearly over 40 % of the run (warmup_pos)
OPTIONS = {
    "alpha": (0.5, "MixUp Beta(alpha, alpha) parameter"),
    "lambda_u": (50.0, "weight of the unlabeled (consistency) loss after its ramp-up"),
}


class ICT(PiModel):
    unlabeled_views = 1

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor], models: Models) -> Rows:
        lam = draw_mix_lambda(len(x_lb), self.cfg.alpha)
        p = teacher_probs(models.ema, x_ulb[0])
        u_mix, q = mix_reversed(x_ulb[0], p, lam)
        return Rows({"x": x_lb, "t": one_hot(y_lb, self.num_classes), "u": u_mix, "q": q}, len(x_lb))
