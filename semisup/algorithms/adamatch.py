"""AdaMatch in the semi-supervised setting, as USB's ``semilearn/algorithms/adamatch`` runs it on FixMatch's
substrate (the row every comparison table carries).

    p_lb    = sg[softmax(logits_labeled)],  q = sg[softmax(logits_weak)]   of the joint pass (every rank's rows)
    p_target ← EMA (λ = 0.999, from 1/C) of mean p_lb;  p_model ← EMA of mean q (the first step's mean at first)
    q̃       = Normalize(q·(p_target + 1e-6)/(p_model + 1e-6))    (the distributions updated with this step first)
    c_τ     = τ · mean_b max p_lb,b                                 (the relative threshold: this step's labeled rows)
    m       = 1[max q̃ >= c_τ],  ŷ = argmax q̃
    loss_u  = 1/(μB) Σ m·CE(ŷ, logits_strong),  loss = loss_x + λu·loss_u

The official AdaMatch (google-research/adamatch, ``semi_supervised/adamatch.py``) differs: random logit
interpolation between a labeled-only and the joint pass, the labeled loss over a weak and a strong labeled view,
τ = 0.9, p_model the mean of a 128-batch queue, λu rising by a half cosine over the first half of training, heavy-ball
momentum, μ = 3. semisup follows USB's port, which drops these on purpose for the semi-supervised setting (USB
issue 17), so that AdaMatch differs from FixMatch only by its threshold and alignment.
"""
from typing import Optional

import torch

from .adaptive import AdaptiveThreshold, Selection, StepLogits
from .thresholds import align, ema, relative_threshold, uniform

NAME = "adamatch"
CLASS = "AdaMatch"
STEP_COST = 45  # as FixMatch: 15 images per labeled image, forward and backward in the joint pass
SUMMARY = "AdaMatch: a threshold relative to the labeled batch's confidence, and distribution alignment"
# FixMatch's recipe (its DEFAULTS) and these of its options, as fixmatch.py declares them
LIKE = ("fixmatch", ("confidence", "lambda_u", "uratio", "strong_aug"))
OPTIONS = {
    "ema_p": (0.999, "momentum λ of the running statistics (FreeMatch's τ, p̃, h̃; SoftMatch's μ, σ²; the "
                     "alignment's distributions)"),
}


class AdaMatch(AdaptiveThreshold):
    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.p_target = uniform(num_classes)
        self.p_model: Optional[torch.Tensor] = None

    def select(self, step: StepLogits) -> Selection:
        probs, probs_lb = step.weak.softmax(-1), step.labeled.softmax(-1)
        m, mean = self.cfg.ema_p, probs.mean(0)
        self.p_model = mean if self.p_model is None else ema(self.p_model.to(mean.device), mean, m)
        self.p_target = ema(self.p_target.to(mean.device), probs_lb.mean(0), m)
        aligned = align(probs, self.p_target, self.p_model)
        threshold = relative_threshold(probs_lb, self.cfg.confidence)
        confidence, labels = aligned.max(-1)
        mask = (confidence >= threshold).float()
        self.last_stats = {"pass_rate": mask.mean(), "threshold": threshold}
        return Selection(labels, mask)

    def state_dict(self) -> dict:
        p_model = {} if self.p_model is None else {"p_model": self.p_model.cpu().clone()}
        return {**super().state_dict(), "p_target": self.p_target.cpu().clone(), **p_model}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "p_target" not in state:
            return
        self.check_classes(state["p_target"], "distributions")
        self.p_target = state["p_target"].clone()
        self.p_model = state["p_model"].clone() if "p_model" in state else None
