"""Model registry: ``create_model(name, num_classes, image_size)``, plus rebuilding a saved shape (``arch``).

The official ResNet has ``scales = floor(log2(image_size)) - 2`` stages (3 at 32x32, 4 at STL-10's 96x96), each
``filters << scale`` wide, after a 16-filter stem: WRN-28-2 is filters 32 (32/64/128, and 256 at 96x96), the
paper's large model filters 135. The widths are saved in the checkpoint's ``arch``, so a model is rebuilt from
its ``arch`` alone, whatever image size it was made for.

The three CIFAR networks network slimming (Liu et al., 2017) was made on (VGG-19, pre-activation ResNet-164 and
DenseNet-40) have one shape whatever the image size: they end in a mean over the last map, which at 32x32 is the
original's fixed average pool.
"""
import math
import re
from contextlib import contextmanager
from typing import Callable, Dict, List

import torch.nn as nn

from .densenet import DenseNet
from .preresnet import PreResNet
from .vgg import DEPTHS as VGG_DEPTHS
from .vgg import VGG
from .wideresnet import WideResNet


def num_scales(image_size: int) -> int:
    """Stages of the official network for square images of this size: floor(log2(size)) - 2, at least 1."""
    return max(int(math.floor(math.log2(image_size))) - 2, 1)


def stage_widths(filters: int, image_size: int, cap: int = 0) -> List[int]:
    """``filters << scale`` for each stage (each capped at ``cap`` when given: the tiny test model)."""
    widths = [filters << s for s in range(num_scales(image_size))]
    return [min(w, cap) for w in widths] if cap else widths


def _wrn(filters: int, cap: int = 0, **fixed) -> Callable[..., nn.Module]:
    def build(num_classes: int, image_size: int = 32, **arch) -> nn.Module:
        shape = {**fixed, "widths": stage_widths(filters, image_size, cap), **arch}
        return WideResNet(num_classes, **shape)
    return build


def _cifar(cls: Callable[..., nn.Module], **defaults) -> Callable[..., nn.Module]:
    def build(num_classes: int, image_size: int = 32, **arch) -> nn.Module:
        return cls(num_classes, **{**defaults, **arch})
    return build


MODELS: Dict[str, Callable[..., nn.Module]] = {
    # WRN-28-2: widths 32/64/128 after a 16-filter stem; 1,467,610 parameters at 10 classes and 32x32.
    "wrn-28-2": _wrn(32),
    # The paper's large model (Table 1): 135 filters, widths 135/270/540 at 32x32, about 26M parameters.
    "wrn-28-large": _wrn(135),
    # WRN-28-8: the FixMatch paper's CIFAR-100 network (the official --filters=128), widths 128/256/512, about 23M.
    "wrn-28-8": _wrn(128),
    # WRN-16-1 (widths 16/32/64 at 32x32, two blocks per stage, 175k parameters): the CPU-scale reproduction's
    # network (scripts/sweep.py quick), about a tenth of WRN-28-2's step.
    "wrn-16-1": _wrn(16, depth=16),
    # A tiny WRN-10 for tests and smoke runs: same code path, a hundredth of the cost (widths 8/16/16[/16]).
    "wrn-10-tiny": _wrn(8, cap=16, stem=4, depth=10),
    # Network slimming's networks, with its initialisation (batch-norm γ = 0.5): VGG-19 with batch norm (20,035,018
    # parameters at 10 classes; its vgg.py's other depths 11, 13 and 16 too), the bottleneck pre-activation
    # ResNet-164 and DenseNet-40 (growth 12).
    **{f"vgg{depth}": _cifar(VGG, cfg=cfg) for depth, cfg in VGG_DEPTHS.items()},
    "preresnet-164": _cifar(PreResNet),
    "densenet-40": _cifar(DenseNet),
}


def unknown_model(name: str) -> str:
    """The one-line answer to a --model that is not registered (a VGG of another depth gets the depths there are)."""
    vgg = re.fullmatch(r"vgg(\d+)", name)
    if vgg:
        depths = ", ".join(map(str, VGG_DEPTHS))
        return f"there is no VGG of depth {vgg[1]}: network slimming's VGG has depths {depths} (--model vgg19, ...)"
    return f"--model must be one of {', '.join(sorted(MODELS))} (got {name})"


def create_model(name: str, num_classes: int = 10, image_size: int = 32, **arch) -> nn.Module:
    """Build a registered model for ``image_size`` images; ``arch`` overrides its shape (e.g. the inner widths
    of a pruned network, or every width when rebuilding a saved model)."""
    if name not in MODELS:
        raise ValueError(unknown_model(name))
    return MODELS[name](num_classes, image_size=image_size, **arch)


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
    """Rebuild a model from the ``arch`` dict saved in a checkpoint (its num_classes and widths included)."""
    arch = dict(arch)
    return create_model(name, arch.pop("num_classes"), **arch)
