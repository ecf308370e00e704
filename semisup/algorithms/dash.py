"""Dash (dynamic thresholding on the loss), as USB's ``semilearn/algorithms/dash`` computes it.

    warm-up  the first --dash-warmup steps train the labeled term alone (loss_u's weight 0)
    ρ̂        the labeled cross-entropy of the first step (the initial weights), over every rank's rows
    ρ        = max(C·γ^(−k)·ρ̂, ρ_min),  k = (step − warm-up) // --dash-every   (C = 1.0001, γ = 1.27, ρ_min = 0.05)
    target   = softmax(logits_weak/T) (soft, T = 0.5) while ρ > ρ_min, then argmax (hard, once ρ = ρ_min)
    m        = 1[CE(target, sg[logits_weak]) <= ρ]   the weak view's loss against its own target
    loss_u   = 1/(μB) Σ m·CE(target, logits_strong)

Where semisup differs from USB, and why:
- USB's warm-up is 2,048 supervised steps before the run (its counter then restarts); here the warm-up steps are
  the run's first steps (the unlabeled rows still go through the joint pass, with weight 0), so --steps counts
  the whole run and the schedule's horizon is the run's.
- USB computes ρ̂ by an evaluation whose EMA shadow was registered at the warm-up's start and never updated: the
  evaluation set's cross-entropy of the *initial* weights (about ln C). semisup reads the same quantity from the
  first step's labeled batch, with no pass over the evaluation set. The paper's intent, the warmed-up model's loss
  on the labeled data, would be near 0 after 2,048 steps on a few hundred labels, and ρ would sit at ρ_min from
  the start.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from .adaptive import AdaptiveThreshold, Selection, StepLogits
from .thresholds import dash_rho, decays_at, self_loss

NAME = "dash"
CLASS = "Dash"
STEP_COST = 45  # as FixMatch: 15 images per labeled image, forward and backward in the joint pass
SUMMARY = "Dash: pseudo-labels whose weak-view loss is under a threshold ρ that decays from the first step's loss"
# FixMatch's recipe (its DEFAULTS) and these of its options, as fixmatch.py declares them
LIKE = ("fixmatch", ("lambda_u", "uratio", "strong_aug"))
OPTIONS = {
    "T": (0.5, "sharpening temperature"),
    "dash_warmup": (2048, "dash: the first steps train on the labeled images alone (USB's num_wu_iter)"),
    "dash_every": (10240, "dash: steps between two decays of ρ (USB: 10 epochs of 1,024 steps)"),
    "dash_gamma": (1.27, "dash: ρ is divided by γ at every decay"),
    "dash_c": (1.0001, "dash: ρ's constant factor C"),
    "rho_min": (0.05, "dash: ρ's floor; at it the targets turn from soft to hard"),
}


class Dash(AdaptiveThreshold):
    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.rho_init: Optional[float] = None

    def rho(self) -> float:
        cfg = self.cfg
        decays = decays_at(self.step, cfg.dash_warmup, cfg.dash_every)
        return dash_rho(self.rho_init, decays, cfg.dash_gamma, cfg.dash_c, cfg.rho_min)

    def select(self, step: StepLogits) -> Selection:
        if self.rho_init is None:
            self.rho_init = F.cross_entropy(step.labeled, step.y).item()
        weak = step.weak
        if self.step < self.cfg.dash_warmup:
            self.last_stats = {"pass_rate": torch.zeros(()), "threshold": torch.tensor(float("nan"))}
            return Selection(weak.argmax(-1), torch.zeros(len(weak), device=weak.device))
        rho = self.rho()
        targets = weak.argmax(-1) if rho == self.cfg.rho_min else (weak / self.cfg.T).softmax(-1)
        mask = (self_loss(weak, targets) <= rho).float()
        self.last_stats = {"pass_rate": mask.mean(), "threshold": torch.tensor(rho)}
        return Selection(targets, mask)

    def weights(self, images: float) -> Dict[str, float]:
        warming = images < self.cfg.dash_warmup * self.cfg.batch_size
        return {"u": 0.0 if warming else self.cfg.lambda_u}

    def state_dict(self) -> dict:
        rho = {} if self.rho_init is None else {"rho_init": self.rho_init}
        return {**super().state_dict(), **rho}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "rho_init" in state:
            self.rho_init = float(state["rho_init"])
