"""Π-model (official ``pi_model.py``): the live model's prediction on view 1 is the target of view 2.

    loss_x = CE(onehot(y), f(x))                        (the labeled pass: the one that updates batch norm)
    loss_u = 1/(B·C) Σ (sg[softmax f(u1)] - softmax f(u2))²
    loss   = loss_x + w(n)·λ·loss_u,   w(n) = clip(n / (0.4·N), 0, 1) over images n of N

One-directional, as the official code: only view 2 gets a gradient. Each pass has its own batch-norm statistics.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn

from ..losses import lambda_u_at, softmax_mse_sum
from ..models import frozen_bn_stats
from .base import Algorithm, Models, Rows, one_hot, teacher_probs
from .supervised import labeled_loss

NAME = "pi-model"
CLASS = "PiModel"
STEP_COST = 7  # teacher or guess forward 1, labeled and unlabeled forward + backward 3 each
SUMMARY = "Π-model: the live model's softmax on one view is the L2 target of another"
RAMP_SHARE = 0.4  # the consistency weight ramps linearly over 40 % of the run (warmup_pos)
OPTIONS = {
    "lambda_u": (10.0, "weight of the unlabeled (consistency) loss after its ramp-up"),
    "smoothing": (0.0, "label smoothing of the supervised term"),
}


def consistency_loss(net: nn.Module, micro: Rows, autocast) -> torch.Tensor:
    """1/(B·C) Σ (q - softmax net(u))² over the whole batch's rows, on ``u``'s own batch statistics."""
    with frozen_bn_stats(net), autocast():
        logits = net(micro["u"])
    return softmax_mse_sum(logits, micro["q"]) / (micro.full * micro["q"].shape[1])


class PiModel(Algorithm):
    """Targets from a teacher on one view, an L2 consistency on another; Mean Teacher and ICT change the teacher."""

    unlabeled_views = 2
    terms = ("x", "u")

    def teacher(self, models: Models) -> nn.Module:
        return models.live

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor], models: Models) -> Rows:
        q = teacher_probs(self.teacher(models), x_ulb[0])
        t = one_hot(y_lb, self.num_classes, self.cfg.smoothing)
        return Rows({"x": x_lb, "t": t, "u": x_ulb[1], "q": q}, len(x_lb))

    def loss(self, net: nn.Module, micro: Rows, autocast) -> Dict[str, torch.Tensor]:
        return {"x": labeled_loss(net, micro, autocast), "u": consistency_loss(net, micro, autocast)}

    def weights(self, images: float) -> Dict[str, float]:
        return {"u": lambda_u_at(images, self.cfg.lambda_u, self.cfg.rampup_images)}
