"""RandAugment as FixMatch (RA) and UDA use it: the official ``rac`` augmentation of google-research/fixmatch.

Per image (``libml/augment.py:198-223``, ``third_party/auto_augment/augmentations.py``): two of the 14 ops below,
drawn uniformly *with* replacement, each applied with probability 0.5 at its own level drawn from 1..9; then a
16x16 cutout, always. The official code runs the ops on an RGBA copy of the image: geometric ops fill with
transparent black, and the pixels still transparent at the end become gray. AutoContrast, Equalize, Posterize and
Solarize go through RGB and make every pixel opaque again, so after them an earlier fill stays black. The ops
here take that RGBA image (4, H, W) and keep those rules; ``ra_apply`` wraps and unwraps an RGB image.

Randomness: every draw comes from the ``torch.Generator`` passed in, or from torch's global RNG when it is None,
so a seeded generator gives the same images on every machine.
"""
import torch

from . import ops

NAMES = ("Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Contrast", "Brightness",
         "Sharpness", "ShearX", "TranslateX", "TranslateY", "Posterize", "ShearY")
SIGNED = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
MAX_LEVEL = 10  # PARAMETER_MAX; levels are drawn from 1..MAX_LEVEL-1
CUTOUT = 16  # cutout_numpy's size, in pixels whatever the image size


def int_parameter(level: int, maxval: float) -> int:
    """The official ``int(level * maxval / 10)``."""
    return int(level * maxval / MAX_LEVEL)


def float_parameter(level: int, maxval: float) -> float:
    """The official ``float(level) * maxval / 10``."""
    return float(level) * maxval / MAX_LEVEL


def _signed(value, negate: bool):
    return -value if negate else value


def _rgb(fn, opaque: bool):
    """Apply a colour op to the RGB planes of an RGBA image; ``opaque`` for the ops that go through RGB."""
    def op(img: torch.Tensor, level: int, negate: bool = False) -> torch.Tensor:
        alpha = torch.full_like(img[3:], 255) if opaque else img[3:]
        return torch.cat([fn(img[:3], level), alpha])
    return op


def _enhance(fn):
    return _rgb(lambda img, level: fn(img, float_parameter(level, 1.8) + 0.1), opaque=False)


RA_OPS = {
    "Identity": lambda img, level, negate=False: img,
    "AutoContrast": _rgb(lambda img, level: ops.autocontrast(img), opaque=True),
    "Equalize": _rgb(lambda img, level: ops.equalize(img), opaque=True),
    "Rotate": lambda img, level, negate=False: ops.rotate(img, _signed(int_parameter(level, 30), negate)),
    "Solarize": _rgb(lambda img, level: ops.solarize(img, 256 - int_parameter(level, 256)), opaque=True),
    "Color": _enhance(ops.color),
    "Contrast": _enhance(ops.contrast),
    "Brightness": _enhance(ops.brightness),
    "Sharpness": _enhance(ops.sharpness),
    "ShearX": lambda img, level, negate=False: ops.shear_x(img, _signed(float_parameter(level, 0.3), negate)),
    "ShearY": lambda img, level, negate=False: ops.shear_y(img, _signed(float_parameter(level, 0.3), negate)),
    "TranslateX": lambda img, level, negate=False: ops.translate_x(img, _signed(int_parameter(level, 10), negate)),
    "TranslateY": lambda img, level, negate=False: ops.translate_y(img, _signed(int_parameter(level, 10), negate)),
    "Posterize": _rgb(lambda img, level: ops.posterize(img, 4 - int_parameter(level, 4)), opaque=True),
}


def ra_policy(n_ops: int = 2, prob: float = 0.5, generator=None) -> list:
    """The ops one image gets: ``n_ops`` names drawn with replacement, each kept with probability ``prob``, as
    ``(name, level, negate)`` with level in 1..9 and a fair sign for the signed ops. Plain Python values."""
    picks = torch.randint(len(NAMES), (n_ops,), generator=generator).tolist()
    levels = torch.randint(1, MAX_LEVEL, (n_ops,), generator=generator).tolist()
    coins = torch.rand(n_ops, 2, generator=generator, dtype=torch.float64).tolist()
    return [(NAMES[k], lv, NAMES[k] in SIGNED and c[1] > 0.5)
            for k, lv, c in zip(picks, levels, coins) if c[0] < prob]


def ra_apply(img: torch.Tensor, policy: list, fill: int = ops.GRAY) -> torch.Tensor:
    """Apply ``policy`` to a uint8 RGB image the official way: RGBA in, the ops, transparent pixels -> ``fill``."""
    rgba = torch.cat([img, torch.full_like(img[:1], 255)])
    for name, level, negate in policy:
        rgba = RA_OPS[name](rgba, level, negate)
    return torch.where(rgba[3:] == 0, torch.tensor(fill, dtype=img.dtype), rgba[:3])


def ra_cutout(img: torch.Tensor, size: int = CUTOUT, fill: int = ops.GRAY, generator=None) -> torch.Tensor:
    """``cutout_numpy``: centre (row, col) uniform over the image, rows and columns [c - size//2, c + size//2)
    clipped to the image, painted ``fill`` (the official 0.0 in [-1, 1])."""
    h, w = img.shape[-2:]
    row, col = torch.randint(h, (1,), generator=generator).item(), torch.randint(w, (1,), generator=generator).item()
    half = size // 2
    return ops.cutout(img, row - half, col - half, min(h, row + half), min(w, col + half), fill)


class RandAugment:
    """FixMatch's RA strong view: ``ra_policy`` ops, then ``ra_cutout``, on a uint8 (C, H, W) or (N, C, H, W)
    tensor. Draws from ``generator`` (a ``torch.Generator``) or, when None, from torch's global RNG."""

    def __init__(self, n_ops: int = 2, prob: float = 0.5, cutout: int = CUTOUT, fill: int = ops.GRAY):
        self.n_ops, self.prob, self.cutout, self.fill = n_ops, prob, cutout, fill

    def __call__(self, img: torch.Tensor, generator=None) -> torch.Tensor:
        if img.dim() == 4:
            return torch.stack([self(x, generator) for x in img])
        out = ra_apply(img, ra_policy(self.n_ops, self.prob, generator), self.fill)
        return ra_cutout(out, self.cutout, self.fill, generator) if self.cutout > 0 else out
