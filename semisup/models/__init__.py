"""Model registry: ``create_model(name, num_classes)``, plus rebuilding a saved shape (``arch``)."""
from contextlib import contextmanager
from typing import Callable, Dict

import torch.nn as nn

from .wideresnet import WideResNet

MODELS: Dict[str, Callable[..., nn.Module]] = {
    # WRN-28-2: widths 32/64/128 after a 16-filter stem; 1,467,610 parameters at 10 classes.
    "wrn-28-2": lambda num_classes, **arch: WideResNet(num_classes, **{"widths": (32, 64, 128), **arch}),
    # The paper's large model (Table 1): 135 filters per layer, widths 135/270/540, about 26M parameters.
    "wrn-28-large": lambda num_classes, **arch: WideResNet(num_classes, **{"widths": (135, 270, 540), **arch}),
    # WRN-16-1 (widths 16/32/64, two blocks per stage, 175k parameters): the CPU-scale reproduction's network
    # (scripts/sweep.py quick), about a tenth of WRN-28-2's step.
    "wrn-16-1": lambda num_classes, **arch: WideResNet(num_classes, **{"widths": (16, 32, 64), "depth": 16, **arch}),
    # A tiny WRN-10 for tests and smoke runs: same code path, a hundredth of the cost.
    "wrn-10-tiny": lambda num_classes, **arch: WideResNet(num_classes, **{"stem": 4, "widths": (8, 16, 16),
                                                                         "depth": 10, **arch}),
}


def create_model(name: str, num_classes: int = 10, **arch) -> nn.Module:
    """Build a registered model; ``arch`` overrides its shape (e.g. the inner widths of a pruned network)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes, **arch)


def batch_norms(model: nn.Module):
    """Every batch-norm layer of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def frozen_bn_stats(model: nn.Module):
    """Train-mode batch norm (batch statistics) that leaves running_mean/var and the counter untouched."""
    bns = [m for m in batch_norms(model) if m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def model_from_arch(name: str, arch: dict) -> nn.Module:
    """Rebuild a model from the ``arch`` dict saved in a checkpoint (its num_classes included)."""
    arch = dict(arch)
    return create_model(name, arch.pop("num_classes"), **arch)
