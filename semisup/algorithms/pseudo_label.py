"""Pseudo-Label (official ``pseudo_label.py``): the live model's own argmax on an unlabeled image is its label
where the model is confident.

    p = softmax f(u) (one view, the same pass), ŷ = argmax p, m = 1[max p > τ], CE_b = -log p_b,ŷ
    official (default): loss_u = mean_b(m_b) · mean_b(CE_b)
    masked:             loss_u = mean_b(m_b · CE_b)

The official line multiplies a [B] loss by a [B, 1] mask, which broadcasts to [B, B]: its mean is the fraction
of confident rows times the mean cross-entropy over *every* row, not the masked mean its comment intends. Both
are here (``--pl-loss``); the official form is the default. Under gradient accumulation the confident fraction of
the whole batch is computed once (a pass without gradients over all of it, in ``batch``), so the micro-batch
gradients add up to the whole batch's; under torchrun each process uses its own batch's fraction.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses import lambda_u_at
from ..models import frozen_bn_stats
from .base import Algorithm, Models, Rows, one_hot, teacher_probs
from .supervised import labeled_loss

NAME = "pseudo-label"
CLASS = "PseudoLabel"
STEP_COST = 6  # labeled and unlabeled forward + backward (one more forward under accumulation)
SUMMARY = "Pseudo-Label: cross-entropy against the model's own confident argmax on unlabeled images"
RAMP_SHARE = 0.4  # the consistency weight ramps linearly over 40 % of the run (warmup_pos)
OPTIONS = {
    "lambda_u": (1.0, "weight of the unlabeled (consistency) loss after its ramp-up"),
    "threshold": (0.95, "confidence above which a pseudo-label counts (strict >)"),
    "pl_loss": ("official", "official: mean(mask)·mean(CE), the official code's broadcast; masked: mean(mask·CE), "
                            "the intended form", ("official", "masked")),
    "smoothing": (0.0, "label smoothing of the supervised term"),
}


def pseudo_label_loss(logits_u: torch.Tensor, threshold: float, form: str, denom: float,
                      rate: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Σ over rows of the pseudo-label loss, divided by ``denom`` (the whole batch's rows).

    ``rate``: the confident fraction of the whole batch for the official form (default: this batch's own).
    """
    logits = logits_u.float()
    confidence, label = logits.detach().softmax(-1).max(-1)
    mask = (confidence > threshold).float()
    ce = F.cross_entropy(logits, label, reduction="none")
    if form == "masked":
        return (mask * ce).sum() / denom
    return (mask.mean() if rate is None else rate) * ce.sum() / denom


class PseudoLabel(Algorithm):
    unlabeled_views = 1
    terms = ("x", "u")

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor], models: Models) -> Rows:
        rows = {"x": x_lb, "t": one_hot(y_lb, self.num_classes, self.cfg.smoothing), "u": x_ulb[0]}
        if self.cfg.pl_loss == "official" and self.cfg.accum_steps > 1:
            confident = teacher_probs(models.live, x_ulb[0]).max(-1).values > self.cfg.threshold
            rows["rate"] = confident.float().mean().expand(len(x_lb))
        return Rows(rows, len(x_lb))

    def loss(self, net: nn.Module, micro: Rows, autocast) -> Dict[str, torch.Tensor]:
        loss_x = labeled_loss(net, micro, autocast)
        with frozen_bn_stats(net), autocast():
            logits_u = net(micro["u"])
        rate = micro["rate"][0] if "rate" in micro.data else None
        return {"x": loss_x, "u": pseudo_label_loss(logits_u, self.cfg.threshold, self.cfg.pl_loss, micro.full,
                                                    rate)}

    def weights(self, images: float) -> Dict[str, float]:
        return {"u": lambda_u_at(images, self.cfg.lambda_u, self.cfg.rampup_images)}
