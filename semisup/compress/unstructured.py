"""Unstructured pruning: importance scores, masks from scores, and the training-time schedules' math.

Masks zero single weights; the tensors keep their shapes and dense kernels do exactly the same work, so masks save
no time and no memory. They are for studying sparsity (and for sparse kernels elsewhere); for a real speed-up use
structured slimming (``slimming.py``).
"""
from typing import Callable, Dict, Tuple

import torch
import torch.nn as nn
from torch.nn.utils import prune

from ..masks import Masks, effective_weight, prunable_modules, weight_param

Scores = Dict[str, torch.Tensor]
SCOPES = ("global", "local")


def magnitude_scores(model: nn.Module) -> Scores:
    """|w| of every conv/linear weight (already-pruned weights score 0).

    The L1 and L2 norms of a single weight are |w| and |w|, so they rank weights identically; the norm only
    matters when whole filters are ranked (``l1-filter``).
    """
    return {f"{name}.weight": effective_weight(m).abs() for name, m in prunable_modules(model)}


def taylor_scores(model: nn.Module, loss_fn: Callable[[nn.Module, int], torch.Tensor], n_batches: int) -> Scores:
    """First-order Taylor importance |w ⊙ ḡ|, ḡ the gradient of the loss averaged over ``n_batches`` batches.

    Removing w changes the loss by about -g·w (Molchanov et al., 2017), so weights whose product with the mean
    gradient is small can go. ``loss_fn(model, i)`` returns the loss of batch ``i``.
    """
    params = [weight_param(m) for _, m in prunable_modules(model)]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    for i in range(n_batches):
        loss_fn(model, i).backward()
    scores = {}
    for (name, m), p in zip(prunable_modules(model), params):
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        scores[f"{name}.weight"] = (effective_weight(m) * grad / n_batches).abs()
        p.grad = None
    for p, flag in zip(params, saved):
        p.requires_grad_(flag)
    return scores


def masks_from_scores(scores: Scores, ratio: float, scope: str = "global") -> Masks:
    """Masks that zero the ``ratio`` lowest-scoring weights, over all layers at once or per layer.

    The count is torch's: round(ratio · n) (``prune.L1Unstructured``), per layer or over the concatenation.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be global or local, got {scope!r}")
    method = prune.L1Unstructured(amount=ratio)
    if scope == "local":
        # torch's compute_mask flattens with view(): scores of a channels-last weight must be made contiguous
        return {k: method.compute_mask(s.contiguous(), torch.ones_like(s)).bool() for k, s in scores.items()}
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = method.compute_mask(flat, torch.ones_like(flat)).bool()
    out, start = {}, 0
    for key, s in scores.items():
        out[key] = keep[start:start + s.numel()].view_as(s)
        start += s.numel()
    return out


def agp_sparsity(t: int, s_i: float, s_f: float, t0: int, t_end: int) -> float:
    """Automated gradual pruning (Zhu & Gupta, 2017): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³, nΔt = t_end − t0.

    s_i before t0, s_f from t_end on.
    """
    if t <= t0:
        return s_i
    if t >= t_end:
        return s_f
    return s_f + (s_i - s_f) * (1.0 - (t - t0) / (t_end - t0)) ** 3


def set_drop_regrow(score: torch.Tensor, mask: torch.Tensor, zeta: float,
                    generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sparse Evolutionary Training (Mocanu et al., 2018) on one layer: (new mask, regrown positions).

    Drops the round(ζ · live) live weights with the lowest score and regrows as many at random positions that
    were pruned before this drop (when there are too few, random just-dropped positions make up the rest), so
    the number of live weights stays the same.
    """
    flat = mask.flatten().bool()
    live = flat.nonzero().squeeze(1)
    k = int(round(zeta * len(live)))
    if k == 0:
        return mask.bool(), torch.zeros_like(mask, dtype=torch.bool)
    drop = live[score.flatten()[live].topk(k, largest=False).indices]
    candidates = (~flat).nonzero().squeeze(1)
    grow = candidates[torch.randperm(len(candidates), generator=generator)[:k]]
    if len(grow) < k:
        grow = torch.cat([grow, drop[torch.randperm(k, generator=generator)[:k - len(grow)]]])
    new = flat.clone()
    new[drop] = False
    new[grow] = True
    grown = torch.zeros_like(flat)
    grown[grow] = True
    return new.view_as(mask), grown.view_as(mask)
