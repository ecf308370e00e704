"""Pruning masks on conv and linear weights, kept by ``torch.nn.utils.prune`` (``weight_orig`` × ``weight_mask``).

Checkpoints never hold the ``weight_orig``/``weight_mask`` pair: they hold the plain state dict of the effective
weights (``weight_orig * weight_mask``, so pruned weights are stored as zeros) and, beside it, a ``masks`` dict
``{"<module>.weight": bool tensor}``. Any code that builds the model from ``arch`` can load such a checkpoint; code
that wants to keep the sparsity (resumption, ``train.py --init``) re-applies the masks with ``load_masked``.
"""
import copy
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from torch.nn.utils import prune

Masks = Dict[str, torch.Tensor]
PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Every conv and linear layer (the weights that decoupled weight decay also touches)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]


def is_masked(module: nn.Module) -> bool:
    return hasattr(module, "weight_mask")


def weight_param(module: nn.Module) -> nn.Parameter:
    """The trained parameter behind ``module.weight``: ``weight_orig`` when masked, else ``weight``."""
    return module.weight_orig if is_masked(module) else module.weight


@torch.no_grad()
def effective_weight(module: nn.Module) -> torch.Tensor:
    """What the forward pass multiplies by: weight_orig * weight_mask, or the plain weight."""
    w = weight_param(module).detach()
    return w * module.weight_mask if is_masked(module) else w.clone()


def set_masks(model: nn.Module, masks: Masks) -> None:
    """Mask ``model.<name>`` for every entry; an existing mask is overwritten in place (not multiplied in).

    The parameter object is kept (``prune`` re-registers it as ``weight_orig``), so an optimizer built before the
    masks still updates it.
    """
    modules = dict(model.named_modules())
    for key, mask in masks.items():
        module = modules.get(key[:-len(".weight")]) if key.endswith(".weight") else None
        if not isinstance(module, PRUNABLE):
            raise ValueError(f"mask {key!r} names no conv or linear weight of this model")
        mask = mask.to(device=weight_param(module).device, dtype=weight_param(module).dtype)
        if mask.shape != weight_param(module).shape:
            raise ValueError(f"mask {key!r} has shape {list(mask.shape)}, the weight {list(module.weight.shape)}")
        if is_masked(module):
            module.weight_mask.copy_(mask)
        else:
            prune.custom_from_mask(module, "weight", mask)


def clear_masks(model: nn.Module) -> None:
    """Fold every mask into its weight (``prune.remove``): pruned weights become plain zeros."""
    for _, module in prunable_modules(model):
        if is_masked(module):
            prune.remove(module, "weight")


def clone(model: nn.Module) -> nn.Module:
    """A deep copy, masks included. A masked layer's ``weight`` is computed from ``weight_orig`` and the mask (not a
    leaf tensor, which ``copy.deepcopy`` refuses), so the copy computes its own, as the mask's hook would."""
    masked = [m for _, m in prunable_modules(model) if is_masked(m)]
    twin = copy.deepcopy(model, {id(m.weight): None for m in masked})
    for _, m in prunable_modules(twin):
        if is_masked(m):
            m.weight = m.weight_orig * m.weight_mask
    return twin


def get_masks(model: nn.Module) -> Masks:
    return {f"{name}.weight": m.weight_mask.detach().bool().cpu()
            for name, m in prunable_modules(model) if is_masked(m)}


def split_masks(model: nn.Module) -> Tuple[dict, Masks]:
    """(plain state dict with the effective weights, masks): the form checkpoints store."""
    full, state = model.state_dict(), {}
    for key, value in full.items():
        if key.endswith(".weight_mask"):
            continue
        if key.endswith(".weight_orig"):
            prefix = key[:-len("_orig")]
            value = value * full[prefix + "_mask"]
            key = prefix
        state[key] = value
    return state, get_masks(model)


def load_masked(model: nn.Module, state: dict, masks: Masks) -> None:
    """Load a plain state dict, then apply ``masks`` (any masks the model had before are dropped)."""
    clear_masks(model)
    model.load_state_dict(state)
    set_masks(model, masks)


@torch.no_grad()
def zero_pruned_(model: nn.Module, masks: Masks) -> None:
    """Multiply the trained parameters by the masks without keeping them: pruned weights may grow back."""
    modules = dict(model.named_modules())
    for key, mask in masks.items():
        param = weight_param(modules[key[:-len(".weight")]])
        param.mul_(mask.to(param.device, param.dtype))


@torch.no_grad()
def sparsity(model: nn.Module) -> float:
    """Fraction of conv and linear weights that are exactly zero, measured from the effective weights."""
    zeros = total = 0
    for _, module in prunable_modules(model):
        w = effective_weight(module)
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(total, 1)
