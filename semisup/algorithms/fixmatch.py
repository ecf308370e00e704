"""FixMatch (official ``fixmatch.py``, ``ablation/ab_fixmatch_ra.py``): hard pseudo-labels from the weak view where
the live model is confident, cross-entropy on the strong view.

    logits  = f([x; u_weak; u_strong])                  one joint pass: its batch norm updates the running stats
    loss_x  = 1/B Σ CE(y, logits_x)
    q       = sg[softmax(logits_weak)],  ŷ = argmax q,  m = 1[max q >= τ]
    loss_u  = 1/(μB) Σ m · CE(ŷ, logits_strong)          over all μB unlabeled images, masked ones included
    loss    = loss_x + λu·loss_u                         (λu = 1, no ramp; coupled L2 on the kernels by SGD)

The unlabeled set includes the labeled images. The strong view is RandAugment (2 ops, p 0.5, then a 16-pixel gray
cutout: FixMatch (RA)) or CTAugment (2 ops from learned bins, then a full cutout: FixMatch (CTA)), each after its
own flip and crop. The recipe (SGD, Nesterov, lr 0.03, cosine over 7π/16, L2 5e-4 on kernels, μ = 7) is the
file's DEFAULTS, so ``train.py --algorithm fixmatch`` alone is the paper's.
"""
from dataclasses import dataclass
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Algorithm, Models
from .strong import StrongAugment

NAME = "fixmatch"
CLASS = "FixMatch"
STEP_COST = 45  # per labeled image at μ = 7: 15 images forward once and backward (2) in the joint pass
SUMMARY = "FixMatch: confident hard pseudo-labels of the weak view train the strong view (RandAugment or CTAugment)"
OPTIONS = {
    "confidence": (0.95, "threshold τ: the weak view's softmax must reach it (>=) for its pseudo-label to count"),
    "lambda_u": (1.0, "weight of the unlabeled loss (constant, no ramp-up)"),
    "uratio": (7, "unlabeled images per labeled image (μ): the unlabeled batch is μ × --batch-size"),
    "strong_aug": ("ra", "the strong augmentation: ra (RandAugment + cutout, FixMatch (RA)) or cta (CTAugment + "
                         "cutout, FixMatch (CTA))", ("ra", "cta")),
}
DEFAULTS = {"optimizer": "sgd", "lr": 0.03, "nesterov": True, "lr_schedule": "cosine-7/16", "wd": 5e-4,
            "wd_mode": "l2-kernels"}


@dataclass
class UnlabeledRows:
    """One step's labeled rows (x, y) and unlabeled rows (weak, strong), each split on its own into micro-batches."""
    x: torch.Tensor
    y: torch.Tensor
    weak: torch.Tensor
    strong: torch.Tensor
    full_x: int
    full_u: int

    def part(self, index: int, count: int) -> "UnlabeledRows":
        """Micro-batch ``index`` of ``count``: its share of the labeled rows and of the unlabeled rows."""
        nx, nu = len(self.x) // count, len(self.weak) // count
        lab, unl = slice(index * nx, (index + 1) * nx), slice(index * nu, (index + 1) * nu)
        return UnlabeledRows(self.x[lab], self.y[lab], self.weak[unl], self.strong[unl], self.full_x, self.full_u)


def joint_logits(net: nn.Module, rows: UnlabeledRows, autocast):
    """(labeled, weak, strong) logits of one forward pass over all rows: its batch statistics are the whole
    batch's, and they update the running ones (the Trainer freezes them after the first micro-batch)."""
    with autocast():
        logits = net(torch.cat([rows.x, rows.weak, rows.strong])).float()
    nx, nu = len(rows.x), len(rows.weak)
    return logits[:nx], logits[nx:nx + nu], logits[nx + nu:]


def supervised_loss(logits: torch.Tensor, y: torch.Tensor, full: int) -> torch.Tensor:
    """Σ CE(y, logits) / full: the mean over the whole batch's labeled rows, summed over micro-batches."""
    return F.cross_entropy(logits, y, reduction="sum") / full


def confident_pseudo_labels(logits_weak: torch.Tensor, threshold: float):
    """(ŷ, mask): the argmax of sg[softmax(logits_weak)] and where its maximum reaches ``threshold`` (>=)."""
    probs = logits_weak.detach().float().softmax(-1)
    confidence, labels = probs.max(-1)
    return labels, (confidence >= threshold).float()


def pseudo_label_loss(logits_weak: torch.Tensor, logits_strong: torch.Tensor, threshold: float,
                      full: int) -> torch.Tensor:
    """Σ m·CE(ŷ, logits_strong) / full: masked rows count in the denominator (the official mean over μB)."""
    labels, mask = confident_pseudo_labels(logits_weak, threshold)
    return masked_cross_entropy(logits_strong, labels, mask, full)


def masked_cross_entropy(logits_strong: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                         full: int) -> torch.Tensor:
    """Σ m·CE(ŷ, logits_strong) / full."""
    return (F.cross_entropy(logits_strong, labels, reduction="none") * mask).sum() / full


class FixMatch(Algorithm):
    """The weak and strong views of μB unlabeled images, one joint pass with the labeled ones."""

    unlabeled_views = 1
    strong_views = 1
    unlabeled_has_labeled = True
    terms = ("x", "u")
    stats = ("pass_rate", "threshold")

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.uratio = cfg.uratio
        self.augment = StrongAugment.for_run(cfg, cfg.strong_aug)
        self.passed = torch.zeros(())  # unlabeled rows of this step at or above τ, over its micro-batches

    def strong(self, images: torch.Tensor) -> torch.Tensor:
        return self.augment(images)

    def observe_labeled(self, images: torch.Tensor, labels: torch.Tensor, models: Models) -> None:
        self.augment.learn(images, labels, models.ema)

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor],
              models: Models) -> UnlabeledRows:
        weak, strong = x_ulb
        self.passed = torch.zeros(())
        return UnlabeledRows(x_lb, y_lb, weak, strong, len(x_lb), len(weak))

    def count_passed(self, mask: torch.Tensor, full: int) -> None:
        """Add a micro-batch's mask to the step's share of unlabeled rows that passed."""
        self.passed = self.passed.to(mask.device) + mask.sum() / full

    def loss(self, net: nn.Module, micro: UnlabeledRows, autocast) -> Dict[str, torch.Tensor]:
        logits_x, logits_w, logits_s = joint_logits(net, micro, autocast)
        labels, mask = confident_pseudo_labels(logits_w, self.cfg.confidence)
        self.count_passed(mask, micro.full_u)
        return {"x": supervised_loss(logits_x, micro.y, micro.full_x),
                "u": masked_cross_entropy(logits_s, labels, mask, micro.full_u)}

    def step_stats(self) -> Dict[str, torch.Tensor]:
        """The share of the step's unlabeled rows whose confidence reached τ, and τ."""
        return {"pass_rate": self.passed, "threshold": torch.tensor(float(self.cfg.confidence))}

    def weights(self, images: float) -> Dict[str, float]:
        return {"u": self.cfg.lambda_u}

    def state_dict(self) -> dict:
        return self.augment.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.augment.load_state_dict(state)
