"""MixUp, the SSL variant of the official ``mixup.py``: labeled rows mixed among themselves, unlabeled rows mixed
among themselves with the live model's (unsharpened) predictions as targets.

    x' = λ' x + (1 - λ') x[::-1],   targets mixed alike           (λ' = max(λ, 1 - λ), λ ~ Beta(α, α) per row)
    q  = sg[softmax f(u)],  u' = μ' u + (1 - μ') u[::-1],  q' = μ' q + (1 - μ') q[::-1]   (μ drawn apart from λ)
    loss = CE(t', f(x')) + CE(q', f(u'))                          (no weight, no ramp-up)

The mixed labeled pass is the one that updates the batch-norm statistics, as in the official code.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn

from ..losses import draw_mix_lambda, mix_reversed, soft_cross_entropy_sum
from ..models import frozen_bn_stats
from .base import Algorithm, Models, Rows, one_hot, teacher_probs
from .supervised import labeled_loss

NAME = "mixup"
CLASS = "MixUp"
STEP_COST = 7  # teacher or guess forward 1, labeled and unlabeled forward + backward 3 each
SUMMARY = "MixUp (SSL): labeled and unlabeled rows each mixed within their own set, soft cross-entropy on both"
OPTIONS = {
    "alpha": (0.75, "MixUp Beta(alpha, alpha) parameter"),
}


class MixUp(Algorithm):
    unlabeled_views = 1
    terms = ("x", "u")

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor], models: Models) -> Rows:
        lam_x = draw_mix_lambda(len(x_lb), self.cfg.alpha)
        x_mix, t_mix = mix_reversed(x_lb, one_hot(y_lb, self.num_classes), lam_x)
        lam_u = draw_mix_lambda(len(x_ulb[0]), self.cfg.alpha)
        u_mix, q_mix = mix_reversed(x_ulb[0], teacher_probs(models.live, x_ulb[0]), lam_u)
        return Rows({"x": x_mix, "t": t_mix, "u": u_mix, "q": q_mix}, len(x_lb))

    def loss(self, net: nn.Module, micro: Rows, autocast) -> Dict[str, torch.Tensor]:
        loss_x = labeled_loss(net, micro, autocast)
        with frozen_bn_stats(net), autocast():
            logits_u = net(micro["u"])
        return {"x": loss_x, "u": soft_cross_entropy_sum(logits_u, micro["q"]) / micro.full}
