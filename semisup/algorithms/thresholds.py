"""The math of the adaptive-threshold methods, as pure functions of small tensors (no state, no model).

Each function is one equation of the official code (``../shared``'s notes give the file:line of every one):
FlexMatch's learning effect and mapped thresholds (TorchSSL ``models/flexmatch``), FreeMatch's self-adaptive
threshold and fairness term, SoftMatch's truncated-Gaussian weight and alignment, AdaMatch's relative threshold and
distribution alignment, Dash's decaying threshold (USB ``semilearn/algorithms``). The algorithms in
``flexmatch.py``, ``freematch.py``, ``softmatch.py``, ``adamatch.py`` and ``dash.py`` keep the state and call these.
"""
from typing import Tuple

import torch

UNUSED = -1  # FlexMatch's mark of an unlabeled image no confident prediction has reached yet
DA_EPS = 1e-6  # USB's DistAlignEMAHook: added to the target and the model distribution before dividing
LOG_EPS = 1e-12  # FreeMatch's fairness term: log(B + 1e-12)


# ----- FlexMatch -------------------------------------------------------------------------------------------
def convex(beta: torch.Tensor) -> torch.Tensor:
    """FlexMatch's mapping M(β) = β / (2 − β) (``flexmatch_utils.py:42``): convex, M(0) = 0, M(1) = 1."""
    return beta / (2 - beta)


def write_marks(marks: torch.Tensor, index: torch.Tensor, labels: torch.Tensor, selected: torch.Tensor) -> None:
    """marks[index[b]] ← labels[b] for the selected rows b, in place; an index repeated in the batch takes the
    label of its last selected row (the official ``selected_label[idx] = ...`` leaves the winner unspecified)."""
    index, labels = index[selected], labels[selected]
    if not len(index):
        return
    last = torch.full((len(marks),), -1, dtype=torch.long, device=marks.device)
    last.scatter_reduce_(0, index, torch.arange(len(index), device=marks.device), "amax")
    hit = last >= 0
    marks[hit] = labels[last[hit]].to(marks.dtype)


def learning_effect(marks: torch.Tensor, num_classes: int, previous: torch.Tensor, warmup: bool) -> torch.Tensor:
    """β(c) = σ(c) / max(max_c σ, N_unused) with the warm-up (the max over the Counter with −1 in it), else
    σ(c) / max_c σ; unchanged (``previous``) while one value fills every mark, as the official guard
    ``max(Counter.values()) < N`` (``flexmatch.py:147``)."""
    counts = torch.bincount(marks + 1, minlength=num_classes + 1)
    if int(counts.max()) >= len(marks):
        return previous
    sigma = counts[1:]
    denominator = counts.max() if warmup else sigma.max()
    return sigma.float() / denominator.float()


def flexmatch_thresholds(beta: torch.Tensor, tau: float) -> torch.Tensor:
    """T(c) = τ·M(β(c)), in float32 as the official ``classwise_acc`` (zero while nothing is marked)."""
    return tau * convex(beta.float())


# ----- FreeMatch -------------------------------------------------------------------------------------------
def ema(old: torch.Tensor, new: torch.Tensor, momentum: float) -> torch.Tensor:
    """λ·old + (1 − λ)·new: every running statistic of these methods."""
    return old * momentum + new * (1 - momentum)


def class_histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Hist(labels) / count: each class's share of the rows (float)."""
    return torch.bincount(labels, minlength=num_classes).float() / max(len(labels), 1)


def freematch_update(tau: torch.Tensor, p_model: torch.Tensor, hist: torch.Tensor, probs: torch.Tensor,
                     momentum: float, clip: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(τ, p̃, h̃) after this batch (USB ``freematch/utils.py:23-43``): τ ← EMA of the mean confidence (clipped to
    0.95 with ``clip``, USB's SVHN setting), p̃ ← EMA of the mean probabilities, h̃ ← EMA of the histogram of the
    predicted classes."""
    confidence, labels = probs.max(-1)
    tau = ema(tau, confidence.mean(), momentum)
    if clip:
        tau = tau.clamp(0, 0.95)
    return tau, ema(p_model, probs.mean(0), momentum), ema(hist, class_histogram(labels, len(p_model)), momentum)


def maxnorm_thresholds(tau: torch.Tensor, p_model: torch.Tensor) -> torch.Tensor:
    """τ(c) = τ·p̃(c) / max_c p̃ (FreeMatch's MaxNorm)."""
    return tau * p_model / p_model.max()


def _reweighted(p: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
    """SumNorm(p · r(hist)), r(x) = 1/x with 1/0 → 0 (a class never predicted gets no weight)."""
    scaled = p * torch.nan_to_num(1 / hist, nan=0.0, posinf=0.0, neginf=0.0)
    return scaled / scaled.sum()


def fairness(p_model: torch.Tensor, hist: torch.Tensor, mean_strong: torch.Tensor,
             hist_strong: torch.Tensor) -> torch.Tensor:
    """Σ_c A_c·log(B_c + 1e-12), A = SumNorm(p̃·r(h̃)) (no gradient), B = SumNorm(p̄·r(ĥ)) with p̄ the mean
    strong-view softmax of the masked rows (the only gradient) and ĥ their predicted classes' histogram
    (USB ``freematch.py:16-44``). It is −H(A, B) ≤ 0, added with +λ_f: training maximises the cross-entropy."""
    a = _reweighted(p_model, hist).detach()
    return (a * torch.log(_reweighted(mean_strong, hist_strong.detach()) + LOG_EPS)).sum()


# ----- SoftMatch, AdaMatch: alignment and weights ----------------------------------------------------------
def align(probs: torch.Tensor, p_target: torch.Tensor, p_model: torch.Tensor, eps: float = DA_EPS) -> torch.Tensor:
    """Normalize(q·(p_target + ε)/(p_model + ε)) per row: USB's distribution alignment (ε = 1e-6), ReMixMatch's
    (``remixmatch_no_cta.py:51-54``, p_data as the target); TorchSSL's SoftMatch divides without ε (``eps=0``)."""
    aligned = probs * ((p_target + eps) / (p_model + eps))
    return aligned / aligned.sum(-1, keepdim=True)


def mean_and_variance(mu: float, var: float, confidence: torch.Tensor, momentum: float) -> Tuple[float, float]:
    """SoftMatch's (μ, σ²) after this batch: EMAs of the mean and the unbiased variance of the confidences,
    each batch term taken as a Python float (USB ``softmatch/utils.py:35-40``); a batch of one row leaves σ²."""
    mu = momentum * mu + (1 - momentum) * confidence.mean().item()
    if len(confidence) > 1:
        var = momentum * var + (1 - momentum) * confidence.var(unbiased=True).item()
    return mu, var


def truncated_gaussian(confidence: torch.Tensor, mu: float, var: float, n_sigma: float) -> torch.Tensor:
    """λ(p) = exp(−min(p − μ, 0)² / (2σ²/n_sigma²)): 1 at and above μ, a half-Gaussian of standard deviation
    σ/n_sigma below it (USB ``softmatch/utils.py:76``)."""
    below = (confidence - mu).clamp(max=0)
    return torch.exp(-below ** 2 / (2 * var / n_sigma ** 2))


def relative_threshold(probs_lb: torch.Tensor, tau: float) -> torch.Tensor:
    """AdaMatch's c_τ = τ · mean over the labeled rows of their maximum probability (USB ``adamatch/utils.py:29``)."""
    return tau * probs_lb.max(-1).values.mean()


# ----- Dash ------------------------------------------------------------------------------------------------
def dash_rho(rho_init: float, decays: int, gamma: float, c: float, rho_min: float) -> float:
    """ρ = max(C·γ^(−k)·ρ̂, ρ_min) after k decays (USB ``dash/utils.py:28-32``)."""
    return max(c * gamma ** (-decays) * rho_init, rho_min)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row −Σ_c t_c·log softmax(logits)_c for soft targets, or the plain cross-entropy for class indices."""
    if targets.dtype == torch.long:
        return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    return -(targets * logits.float().log_softmax(-1)).sum(-1)


def self_loss(logits_weak: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dash's selection statistic: the weak view's cross-entropy against its own (detached) target."""
    return soft_cross_entropy(logits_weak.detach(), targets)


def decays_at(step: int, warmup: int, every: int) -> int:
    """How many times ρ has decayed at ``step``: none in the warm-up's first step after it, then one every
    ``every`` steps (USB resets its counter after the warm-up and decays at it % (10 epochs) == 0)."""
    return max(step - warmup, 0) // every if every > 0 else 0


def uniform(num_classes: int) -> torch.Tensor:
    """1/C for every class: where FreeMatch's statistics and the alignments' distributions start."""
    return torch.full((num_classes,), 1.0 / num_classes)

