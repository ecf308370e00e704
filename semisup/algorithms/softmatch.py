"""SoftMatch (truncated-Gaussian weights and uniform alignment), after TorchSSL ``models/softmatch`` (the code of
the paper's Table 1) or USB ``semilearn/algorithms/softmatch`` (``--softmatch-variant``).

    q        = sg[softmax(logits_weak)] of the joint pass (every rank's rows),  ŷ = argmax q (never aligned)
    q̃        = Normalize(q·p_target/p_model)           the alignment
    μ, σ²    ← EMAs (λ = 0.999, from 1/C and 1.0) of the mean and unbiased variance of the confidences, updated
               with this step's rows before the weights
    w        = exp(−min(max q̃ − μ, 0)² / (2σ²/n_sigma²))  1 at and above μ, a half-Gaussian below it
    loss_u   = 1/(μB) Σ w·CE(ŷ, logits_strong)

The two codebases differ, and ``--softmatch-variant`` picks one:
- ``torchssl`` (default; the code behind the paper's numbers): μ, σ² from the raw confidences max q, before the
  alignment; p_target an EMA of the labeled rows' mean softmax, p_model of the unlabeled rows', both from 1/C;
  no ε in the division.
- ``usb``: μ, σ² from the aligned confidences max q̃; p_target fixed at the uniform 1/C (``dist_uniform``);
  p_model the first step's mean softmax, then its EMA; ε = 1e-6 added to both distributions. Without the double
  softmax USB had until April 2023, and under torchrun without its crash (``self.concat_all_gather``).
"""
from typing import Optional

import torch

from .adaptive import AdaptiveThreshold, Selection, StepLogits
from .thresholds import align, ema, mean_and_variance, truncated_gaussian, uniform

NAME = "softmatch"
CLASS = "SoftMatch"
STEP_COST = 45  # as FixMatch: 15 images per labeled image, forward and backward in the joint pass
SUMMARY = "SoftMatch: every pseudo-label weighted by a truncated Gaussian of its aligned confidence"
# FreeMatch's recipe (FixMatch's) and these of its options (FixMatch's three, and ema_p), as declared there
LIKE = ("freematch", ("lambda_u", "uratio", "strong_aug", "ema_p"))
OPTIONS = {
    "n_sigma": (2.0, "softmatch: the weight's Gaussian has standard deviation σ/n_sigma below the mean μ"),
    "softmatch_variant": ("torchssl", "softmatch: torchssl (statistics before the alignment, labeled target: the "
                                      "paper's code) or usb (after it, uniform target)", ("torchssl", "usb")),
}


class SoftMatch(AdaptiveThreshold):
    stats = ("pass_rate", "threshold", "threshold_var")

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.mu, self.var = 1.0 / num_classes, 1.0
        self.p_target = uniform(num_classes)
        usb = cfg.softmatch_variant == "usb"
        self.p_model: Optional[torch.Tensor] = None if usb else uniform(num_classes)

    def _aligned(self, probs: torch.Tensor, probs_lb: torch.Tensor) -> torch.Tensor:
        """Update the alignment's distributions with this step, then align (both variants update first)."""
        m, device = self.cfg.ema_p, probs.device
        mean = probs.mean(0)
        self.p_model = mean if self.p_model is None else ema(self.p_model.to(device), mean, m)
        self.p_target = self.p_target.to(device)
        if self.cfg.softmatch_variant == "usb":
            return align(probs, self.p_target, self.p_model)
        self.p_target = ema(self.p_target, probs_lb.mean(0), m)
        return align(probs, self.p_target, self.p_model, eps=0.0)

    def select(self, step: StepLogits) -> Selection:
        probs, probs_lb = step.weak.softmax(-1), step.labeled.softmax(-1)
        m = self.cfg.ema_p
        if self.cfg.softmatch_variant == "torchssl":
            self.mu, self.var = mean_and_variance(self.mu, self.var, probs.max(-1).values, m)
            aligned = self._aligned(probs, probs_lb)
        else:
            aligned = self._aligned(probs, probs_lb)
            self.mu, self.var = mean_and_variance(self.mu, self.var, aligned.max(-1).values, m)
        weights = truncated_gaussian(aligned.max(-1).values, self.mu, self.var, self.cfg.n_sigma)
        self.last_stats = {"pass_rate": weights.mean(), "threshold": torch.tensor(self.mu),
                           "threshold_var": torch.tensor(self.var)}
        return Selection(probs.argmax(-1), weights)

    def state_dict(self) -> dict:
        p_model = {} if self.p_model is None else {"p_model": self.p_model.cpu().clone()}
        return {**super().state_dict(), "mu": self.mu, "var": self.var, "p_target": self.p_target.cpu().clone(),
                **p_model}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "mu" not in state:
            return
        self.check_classes(state["p_target"], "distributions")
        self.mu, self.var, self.p_target = float(state["mu"]), float(state["var"]), state["p_target"].clone()
        self.p_model = state["p_model"].clone() if "p_model" in state else None
