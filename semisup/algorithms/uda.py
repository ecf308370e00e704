"""UDA as the FixMatch paper re-implemented it (official ``uda.py`` of google-research/fixmatch): the weak view's
(temperature-sharpened) prediction is the KL target of the strong view, where the live model is confident.

    logits  = f([x; u_weak; u_strong])                  one joint pass, as FixMatch
    p       = sg[softmax(logits_weak / T)],  m = 1[max sg[softmax(logits_weak)] >= τ]   (mask: unsharpened)
    loss_u  = 1/(μB) Σ m · KL(p ‖ softmax(logits_strong))
    loss_x  = Σ m_s · CE(y, logits_x) / max(Σ m_s, 1),  m_s = 1[sg[p_y] <= tsa(n)]    (training-signal annealing)
    tsa(n)  = coeff(r)·(1 − 1/C) + 1/C,  r = n / (min(kimg, 16384) · 2^tsa_pos),  coeff: linear r, exp e^{5(r−1)},
              log 1 − e^{−5r}, no: 1 (nothing masked, the default)

The defaults are the official file's (T = 1, τ = 0.95, TSA off, μ = 7, RandAugment), with FixMatch's recipe. The
entropy term (``we``, 0 by default there) is left out.
"""
import math
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fixmatch import FixMatch, UnlabeledRows, confident_pseudo_labels, joint_logits

NAME = "uda"
CLASS = "UDA"
STEP_COST = 45  # as FixMatch: 15 images per labeled image, forward and backward in the joint pass
SUMMARY = "UDA: KL from the weak view's (sharpened, confident) prediction to the strong view's, with TSA"
# FixMatch's recipe (its DEFAULTS) and these of its options, as fixmatch.py declares them
LIKE = ("fixmatch", ("confidence", "lambda_u", "uratio", "strong_aug"))
OPTIONS = {
    "T": (1.0, "sharpening temperature"),
    "tsa": ("no", "training-signal annealing of the supervised term: no, linear, exp or log",
            ("no", "linear", "exp", "log")),
    "tsa_pos": (8, "TSA reaches the end of its schedule after min(training kimg, 16384) · 2^tsa_pos images"),
}
TSA_COEFF = {"no": lambda r: 1.0, "linear": lambda r: r, "exp": lambda r: math.exp(5 * (r - 1)),
             "log": lambda r: 1 - math.exp(-5 * r)}


def tsa_threshold(schedule: str, images: float, train_images: float, num_classes: int, tsa_pos: int) -> float:
    """The largest probability of the true class a labeled image may have and still be trained on (uda.py:36-52)."""
    horizon = min(train_images / 1024, 16384) * (1 << tsa_pos)
    coeff = min(TSA_COEFF[schedule](images / horizon), 1.0)
    return coeff * (1 - 1 / num_classes) + 1 / num_classes


def annealed_loss(logits: torch.Tensor, y: torch.Tensor, threshold: float, full: int) -> torch.Tensor:
    """Σ m_s·CE / max(Σ m_s, 1), scaled by this micro-batch's share of the ``full`` labeled rows: with every row
    kept (TSA off) it is Σ CE / full, so micro-batches add up to the whole batch's loss."""
    p_true = logits.detach().float().softmax(-1).gather(1, y[:, None]).squeeze(1)
    keep = (p_true <= threshold).float()
    ce = F.cross_entropy(logits, y, reduction="none")
    return (ce * keep).sum() / keep.sum().clamp(min=1) * (len(y) / full)


def kl_consistency(logits_weak: torch.Tensor, logits_strong: torch.Tensor, temperature: float, threshold: float,
                   full: int) -> torch.Tensor:
    """Σ m·KL(softmax(sg[w]/T) ‖ softmax(s)) / full, the mask on the unsharpened softmax (uda.py:153-163)."""
    _, mask = confident_pseudo_labels(logits_weak, threshold)
    target = logits_weak.detach().float() / temperature
    kl = (target.softmax(-1) * (target.log_softmax(-1) - logits_strong.float().log_softmax(-1))).sum(-1)
    return (kl * mask).sum() / full


class UDA(FixMatch):
    """FixMatch's data, joint pass and strong views; UDA's KL and training-signal annealing."""

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.tsa = 1.0

    def loss(self, net: nn.Module, micro: UnlabeledRows, autocast) -> Dict[str, torch.Tensor]:
        logits_x, logits_w, logits_s = joint_logits(net, micro, autocast)
        cfg = self.cfg
        self.count_passed(confident_pseudo_labels(logits_w, cfg.confidence)[1], micro.full_u)
        return {"x": annealed_loss(logits_x, micro.y, self.tsa, micro.full_x),
                "u": kl_consistency(logits_w, logits_s, cfg.T, cfg.confidence, micro.full_u)}

    def weights(self, images: float) -> Dict[str, float]:
        """λu, and (called once per optimizer step, before its micro-batches) this step's TSA threshold."""
        cfg = self.cfg
        self.tsa = tsa_threshold(cfg.tsa, images, cfg.steps * cfg.batch_size, self.num_classes, cfg.tsa_pos)
        return {"u": cfg.lambda_u}
