"""Strong augmentations of FixMatch, ReMixMatch and UDA as google-research/fixmatch computes them, on uint8
(C, H, W) tensors: the pixel ops (``ops``), RandAugment (``randaugment``) and CTAugment (``ctaugment``)."""
from .ctaugment import CTAugment, bin_probabilities, proximity, update_weights
from .randaugment import RandAugment, ra_apply, ra_cutout, ra_policy

__all__ = ["CTAugment", "RandAugment", "bin_probabilities", "proximity", "ra_apply", "ra_cutout", "ra_policy",
           "update_weights"]
