"""FreeMatch (self-adaptive threshold and fairness), as USB's ``semilearn/algorithms/freematch`` computes it.

    q       = sg[softmax(logits_weak)] of the joint pass (every rank's rows),  ŷ = argmax q
    τ       ← λτ + (1 − λ)·mean_b max q_b        p̃ ← λp̃ + (1 − λ)·mean_b q_b      h̃ ← λh̃ + (1 − λ)·Hist(ŷ)/n
              (all three start at 1/C, and this step's rows update them *before* the mask)
    τ(c)    = τ·p̃(c)/max_c p̃                   (MaxNorm),  m = 1[max q >= τ(ŷ)]
    loss_u  = 1/(μB) Σ m·CE(ŷ, logits_strong)
    fair    = Σ_c A_c·log(B_c + 1e-12),  A = SumNorm(p̃/h̃), B = SumNorm(p̄/ĥ)   over the masked rows' strong views:
              p̄ their mean softmax (the gradient), ĥ their predicted classes' histogram; 1/0 → 0; 0 with no row
    loss    = loss_x + λu·loss_u + λ_f·fair       (+λ_f: the term is −H(A, B), so training maximises H(A, B))

λ_f defaults to 0.01, the weight of the TorchSSL configurations that produced the paper's Table 1
(``config/freematch_entropy/*``); USB's classic_cv configurations use 0.001 (``--lambda-fair 0.001``).

The fairness term is a function of the whole step's masked rows, not a sum over rows. To keep its gradient exact
under accumulation and across processes, the step's p̄ and ĥ are taken over every rank's masked rows (the strong
views' detached softmax), the gradient g = ∂fair/∂p̄ is worked out once, and each micro-batch backpropagates
g·Σ_{its masked rows} softmax(strong)/M (M the step's masked rows, times the ranks, which DDP averages): its
gradients add up to the full batch's, and the logged value is the full batch's.
"""
from typing import Dict

import torch

from .adaptive import AdaptiveRows, AdaptiveThreshold, Selection, StepLogits
from .strong import world_size
from .thresholds import class_histogram, fairness, freematch_update, maxnorm_thresholds, uniform

NAME = "freematch"
CLASS = "FreeMatch"
STEP_COST = 45  # as FixMatch: 15 images per labeled image, forward and backward in the joint pass
SUMMARY = "FreeMatch: a self-adaptive threshold (EMA of the confidence, MaxNorm per class) and a fairness term"
# FixMatch's recipe (its DEFAULTS) and these of its options, as fixmatch.py declares them
LIKE = ("fixmatch", ("lambda_u", "uratio", "strong_aug"))
OPTIONS = {
    "ema_p": (0.999, "momentum λ of the running statistics (FreeMatch's τ, p̃, h̃; SoftMatch's μ, σ²; the "
                     "alignment's distributions)"),
    "lambda_fair": (0.01, "freematch: weight λ_f of the self-adaptive fairness term (TorchSSL's configurations; "
                          "USB's use 0.001)"),
    "clip_threshold": (False, "freematch: clip the global threshold τ to at most 0.95 (USB's SVHN setting)"),
}


def fairness_linearised(p_model: torch.Tensor, hist: torch.Tensor, probs_strong: torch.Tensor,
                        mask: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The fairness term's value over the masked rows, its gradient g with respect to p̄, and M, the rows."""
    rows = mask.bool()
    count = int(rows.sum())
    if not count:
        zero = torch.zeros((), device=p_model.device)
        return {"fair_value": zero, "fair_grad": torch.zeros_like(p_model), "fair_rows": zero}
    masked = probs_strong[rows]
    mean = masked.mean(0).requires_grad_(True)
    with torch.enable_grad():
        value = fairness(p_model, hist, mean, class_histogram(masked.argmax(-1), len(p_model)))
        grad, = torch.autograd.grad(value, mean)
    return {"fair_value": value.detach(), "fair_grad": grad, "fair_rows": torch.tensor(float(count))}


class FreeMatch(AdaptiveThreshold):
    terms = ("x", "u", "fair")
    stats = ("pass_rate", "threshold", "class_threshold")

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.tau = torch.tensor(1.0 / num_classes)
        self.p_model, self.hist = uniform(num_classes), uniform(num_classes)
        self.needs_strong = cfg.lambda_fair > 0

    def select(self, step: StepLogits) -> Selection:
        probs = step.weak.softmax(-1)
        device = probs.device
        self.tau, self.p_model, self.hist = freematch_update(
            self.tau.to(device), self.p_model.to(device), self.hist.to(device), probs, self.cfg.ema_p,
            self.cfg.clip_threshold)
        thresholds = maxnorm_thresholds(self.tau, self.p_model)
        confidence, labels = probs.max(-1)
        mask = (confidence >= thresholds[labels]).float()
        extra = {}
        if step.strong is not None:
            extra = fairness_linearised(self.p_model, self.hist, step.strong.softmax(-1), mask)
        self.last_stats = {"pass_rate": mask.mean(), "threshold": self.tau.clone(), "class_threshold": thresholds}
        return Selection(labels, mask, extra)

    def extra_terms(self, logits_s: torch.Tensor, selection: Selection, micro: AdaptiveRows) -> Dict[str, torch.Tensor]:
        """This micro-batch's share of the fairness term: its value's share, with the exact gradient."""
        extra = selection.extra
        if not extra or not float(extra["fair_rows"]):
            return {"fair": torch.zeros((), device=logits_s.device)}
        masked_sum = (logits_s.float().softmax(-1) * selection.weights[:, None]).sum(0)
        linear = (extra["fair_grad"] * masked_sum).sum() * world_size() / extra["fair_rows"]
        share = len(micro.weak) / micro.full_u
        return {"fair": linear - linear.detach() + extra["fair_value"] * share}

    def weights(self, images: float) -> Dict[str, float]:
        return {"u": self.cfg.lambda_u, "fair": self.cfg.lambda_fair}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "tau": self.tau.cpu().clone(), "p_model": self.p_model.cpu().clone(),
                "label_hist": self.hist.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "p_model" not in state:
            return
        self.check_classes(state["p_model"], "statistics")
        self.tau, self.p_model = state["tau"].clone(), state["p_model"].clone()
        self.hist = state["label_hist"].clone()
