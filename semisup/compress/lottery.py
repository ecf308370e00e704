"""Lottery tickets with rewinding: the masks of each round and the checkpoint each round starts from.

Iterative magnitude pruning (Frankle & Carbin, 2019; with rewinding, Frankle et al., 2020; ``open_lth``): train,
remove the ``fraction`` of the surviving conv/linear weights with the smallest magnitude, reset the survivors to
their values at step K (K = 0: the initialisation), train again with the pruned weights held at zero, repeat.
After r rounds the sparsity is 1 - (1 - fraction)^r. Two controls tell a winning ticket from a merely sparse
network: the same masks on a fresh initialisation (``reinit``), and random masks with the same per-layer
sparsity (``random``), both trained exactly as the ticket.

Everything here is a pure function of tensors and checkpoint dicts; ``semisup.experiments.lottery`` runs the rounds.
"""
from typing import Dict, List

import torch

from ..masks import Masks, prunable_modules
from ..models import model_from_arch
from .unstructured import SCOPES

Weights = Dict[str, torch.Tensor]
# The reinit control's initialisation seed and the random control's mask seed, per round r >= 1: seed + STRIDE * r,
# never the run's own seed, and a different draw every round.
REINIT_SEED_STRIDE = 7919
RANDOM_SEED_STRIDE = 104729


def expected_sparsity(fraction: float, rounds: int) -> float:
    """1 - (1 - fraction)^rounds: each round removes ``fraction`` of what is left."""
    return 1.0 - (1.0 - fraction) ** rounds


def prunable_keys(model_name: str, arch: dict) -> List[str]:
    """The state-dict keys of the model's conv and linear weights, in module order (what masks cover)."""
    return [f"{name}.weight" for name, _ in prunable_modules(model_from_arch(model_name, arch))]


def full_masks(state: dict) -> Masks:
    """A checkpoint's masks over every conv/linear weight: its own, and all-true where it has none."""
    saved = state.get("masks") or {}
    return {key: saved[key].bool().cpu() if key in saved else torch.ones_like(state["model"][key], dtype=torch.bool)
            for key in prunable_keys(state["model_name"], state["arch"])}


def sparsity_of(masks: Masks) -> float:
    """Fraction of the masked weights that are pruned."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / max(total, 1)


def next_masks(weights: Weights, masks: Masks, fraction: float, scope: str = "global") -> Masks:
    """The next round's masks: ``masks`` minus the ``fraction`` of its survivors with the smallest |weight|.

    ``global`` ranks the survivors of all layers together (open_lth's default), ``local`` takes the fraction from
    each layer. The count is round(fraction · survivors); ties go to the weight that comes first. A weight pruned
    before stays pruned whatever its value, so the sparsity grows as 1 - (1 - fraction)^r.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be global or local, got {scope!r}")
    groups = [[key] for key in weights] if scope == "local" else [list(weights)]
    out = {}
    for keys in groups:
        out.update(_prune_survivors({k: weights[k] for k in keys}, {k: masks[k] for k in keys}, fraction))
    return out


def _prune_survivors(weights: Weights, masks: Masks, fraction: float) -> Masks:
    """One group of layers ranked together: the pruned score +inf so that only survivors can be chosen."""
    alive = torch.cat([masks[k].bool().flatten().cpu() for k in weights])
    scores = torch.cat([weights[k].detach().abs().float().flatten().cpu() for k in weights])
    scores = torch.where(alive, scores, torch.full_like(scores, float("inf")))
    count = int(round(fraction * int(alive.sum())))
    keep = alive.clone()
    keep[torch.argsort(scores, stable=True)[:count]] = False
    out, start = {}, 0
    for key, w in weights.items():
        out[key] = keep[start:start + w.numel()].view(w.shape)
        start += w.numel()
    return out


def random_masks_like(masks: Masks, generator: torch.Generator) -> Masks:
    """Masks that keep as many weights in each layer as ``masks`` does, at positions drawn uniformly."""
    out = {}
    for key, mask in masks.items():
        keep = torch.zeros(mask.numel(), dtype=torch.bool)
        keep[torch.randperm(mask.numel(), generator=generator)[:int(mask.sum())]] = True
        out[key] = keep.view(mask.shape)
    return out


def masked(weights: dict, masks: Masks) -> dict:
    """A plain state dict with every masked weight multiplied by its mask (pruned weights exactly zero)."""
    return {k: v * masks[k].to(v.device, v.dtype) if k in masks else v for k, v in weights.items()}


def fresh_weights(model_name: str, arch: dict, seed: int) -> dict:
    """A new initialisation of the same network (weights and batch-norm buffers), drawn from ``seed`` without
    touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_from_arch(model_name, arch).state_dict()


def rewound_state(step_state: dict, masks: Masks, config: dict, weights: dict = None) -> dict:
    """The checkpoint a round starts from: the full state kept at step K (optimizer, schedule, algorithm state,
    RNG, sampler positions and the step counter K) with the round's masks, its model and EMA the step-K ones (or
    ``weights``: the reinit control's fresh initialisation) times the masks. Resuming it trains on from step K
    exactly as the first run did, pruned weights held at zero; the history and the loss window start empty, so
    the round's logs hold its own evaluations only."""
    model = step_state["model"] if weights is None else weights
    ema = step_state["ema"] if weights is None else weights
    return {**step_state, "config": config, "model": masked(model, masks), "ema": masked(ema, masks),
            "masks": {k: m.bool().cpu() for k, m in masks.items()}, "history": [], "window": None}


def reinit_seed(seed: int, round_: int) -> int:
    return seed + REINIT_SEED_STRIDE * round_


def random_mask_generator(seed: int, round_: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + RANDOM_SEED_STRIDE * round_)
