"""Rebuild a trained model from a checkpoint for inference, and re-estimate its batch-norm statistics.

A checkpoint carries its model's name and shape (``arch``), so a pruned network with smaller inner widths is rebuilt
at its own size. Weights saved while ``torch.nn.utils.prune`` masks were attached appear as ``weight_orig`` and
``weight_mask``; they are folded into plain ``weight`` tensors (orig × mask), which is exactly what the masked
module computes in its forward pass.
"""
from collections import OrderedDict
from contextlib import nullcontext
from typing import Dict

import torch
import torch.nn as nn

from .augment import to_float
from .checkpoint import CheckpointError
from .config import first_line
from .models import batch_norms, model_from_arch

ORIG, MASK = "_orig", "_mask"


def fold_pruning_masks(state_dict: Dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Replace every ``<name>_orig`` / ``<name>_mask`` pair by ``<name>`` = orig × mask; other entries unchanged."""
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith(ORIG) and key[:-len(ORIG)] + MASK in state_dict:
            base = key[:-len(ORIG)]
            out[base] = value * state_dict[base + MASK].to(value.dtype)
        elif key.endswith(MASK) and key[:-len(MASK)] + ORIG in state_dict:
            continue
        else:
            out[key] = value
    return out


def model_from_checkpoint(state: dict, weights: str = "ema", source: str = "checkpoint") -> nn.Module:
    """The model of a loaded checkpoint with its ``ema`` or raw (``model``) weights, in eval mode on the CPU.

    Any shape or key mismatch becomes a ``CheckpointError`` with one line naming ``source``.
    """
    key = "ema" if weights == "ema" else "model"
    if not isinstance(state.get(key), dict):
        hint = " (try --weights raw)" if key == "ema" else ""
        raise CheckpointError(f"{source}: holds no {weights} weights{hint}")
    if not isinstance(state["arch"], dict):
        raise CheckpointError(f"{source}: its 'arch' entry is not a dictionary")
    try:
        model = model_from_arch(state["model_name"], state["arch"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: cannot rebuild model {state['model_name']!r} with arch "
                              f"{state['arch']}: {err}") from None
    try:
        model.load_state_dict(fold_pruning_masks(state[key]))
    except RuntimeError as err:
        raise CheckpointError(f"{source}: {weights} weights do not fit the saved arch ({first_line(err)})") from None
    return model.eval()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: torch.Tensor, batch_size: int, device=None,
                   memory_format=torch.contiguous_format, autocast=None) -> int:
    """Re-estimate every batch norm's running mean and variance on ``images`` (uint8, no augmentation).

    The running statistics are reset and each layer's momentum set to None, PyTorch's cumulative moving average,
    so after the pass they are the plain average of the per-batch statistics (the exact mean and unbiased variance
    over all images when one batch holds them all). Parameters are untouched: only forward passes in train mode
    under no_grad. Momenta and the train/eval mode are restored afterwards. Returns the number of batches.
    """
    layers = batch_norms(model)
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    device = device or next(model.parameters()).device
    model.train()
    n_batches = 0
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size].to(device), memory_format)
            with autocast or nullcontext():
                model(x)
            n_batches += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    return n_batches
