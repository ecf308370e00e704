"""MixMatch (official ``mixmatch.py``): K views, sharpened guesses, MixUp over labeled and unlabeled, L2 loss.

The math is in ``semisup.mixmatch`` (pure functions); this file is its batch, loss and ramp.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn

from ..batch import Batch, labeled_then_views
from ..losses import lambda_u_at, mixup_loss
from ..mixmatch import forward_interleaved, mix_batch
from .base import Algorithm, Models

NAME = "mixmatch"
CLASS = "MixMatch"
SUMMARY = "MixMatch: K views, sharpened label guesses, MixUp of labeled and unlabeled rows, L2 unlabeled loss"
OPTIONS = {
    "K": (2, "augmented views per unlabeled image"),
    "T": (0.5, "sharpening temperature"),
    "no_sharpen": (False, "do not sharpen the guessed labels (same as --T 1)"),
    "alpha": (0.75, "MixUp Beta(alpha, alpha) parameter"),
    "mixup": ("all", "what MixUp mixes: all (MixMatch), none, labeled, unlabeled, separate",
              ("all", "none", "labeled", "unlabeled", "separate")),
    "ema_guess": (False, "guess labels with the EMA model instead of the raw model"),
    "lambda_u": (75.0, "weight of the unlabeled (consistency) loss after its ramp-up"),
    "rampup_kimg": (1024.0, "lambda_u rises linearly from 0 over this many thousand (x1024) labeled images, as "
                            "the official warmup_kimg (1024 = 16,384 steps at batch 64); > 0 replaces "
                            "--rampup-share"),
    "rampup_steps": (0, "if > 0: the ramp-up in optimizer steps at this run's batch size, instead of "
                        "--rampup-kimg or --rampup-share"),
}


class MixMatch(Algorithm):
    """MixMatch's batch (guess, sharpen, mix up) and its loss (interleaved forward, MixUpLoss)."""

    terms = ("x", "u")

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.K, self.T = cfg.K, cfg.temperature
        self.unlabeled_views = cfg.K

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor], models: Models) -> Batch:
        """The mixed rows [labeled; K views of the unlabeled, view after view] and their mixed targets."""
        guess_model = models.ema if self.cfg.ema_guess else models.live
        x_mix, t_mix, _ = mix_batch(guess_model, x_lb, y_lb, x_ulb, self.num_classes, self.T, self.cfg.alpha,
                                    self.cfg.mixup)
        return Batch(x_mix, t_mix, len(x_lb), len(x_lb))

    def micro_batch(self, batch: Batch, index: int, count: int) -> Batch:
        """Micro-batch ``index`` of ``count``: its share of the labeled rows, then of each view's rows."""
        return labeled_then_views(batch, self.K, index, count)

    def loss(self, net: nn.Module, micro: Batch, autocast) -> Dict[str, torch.Tensor]:
        """loss_x and loss_u of one micro-batch, divided by the full batch's row counts (see ``mixup_loss``)."""
        b, n = micro.n_lb, micro.full_n_lb
        with autocast():
            logits = forward_interleaved(net, micro.x, b)
        loss_x, loss_u = mixup_loss(logits[:b], micro.targets[:b], logits[b:], micro.targets[b:], n,
                                    n * self.K * self.num_classes)
        return {"x": loss_x, "u": loss_u}

    def weights(self, images: float) -> Dict[str, float]:
        return {"u": lambda_u_at(images, self.cfg.lambda_u, self.cfg.rampup_images)}
