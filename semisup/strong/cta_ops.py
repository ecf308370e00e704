"""CTAugment's 19 ops in the official parameterisation (google-research/fixmatch ``libml/ctaugment.py:88-219``).

Each op takes a uint8 RGB image (3, H, W) and one value in [0, 1] per bin vector, as the official ``OPS`` do.
The official code converts to PIL RGB without loss (``round(127.5 (1 + x))`` of an image that was uint8), so
geometric fills are black and the cutout is (127, 127, 127). ``Image.ANTIALIAS`` in ``rescale`` is LANCZOS, the
filter it always named in Pillow (it was only an alias, removed in Pillow 10).
"""
import torch

from . import ops
from .resample import resize

RESCALE_METHODS = ("lanczos", "bicubic", "bilinear", "box", "hamming", "nearest")


def _enhance(fn):
    return lambda img, level: fn(img, 0.1 + 1.9 * level)


def _blend_with(fn):
    return lambda img, level: ops.blend(img, fn(img), level)


def cutout(img: torch.Tensor, level: float, generator=None) -> torch.Tensor:
    """A square of side ``2 * (s // 2)``, s = 1 + int(level * min(H, W) * 0.499), centred at a uniform (col, row)
    (the official draws the column first: PIL's size is (W, H)), clipped, painted (127, 127, 127)."""
    h, w = img.shape[-2:]
    half = (1 + int(level * min(h, w) * 0.499)) // 2
    col, row = torch.randint(w, (1,), generator=generator).item(), torch.randint(h, (1,), generator=generator).item()
    return ops.cutout(img, row - half, col - half, min(h, row + half), min(w, col + half), ops.GRAY)


def posterize(img: torch.Tensor, level: float) -> torch.Tensor:
    """Bits ``1 + int(level * 7.999)``."""
    return ops.posterize(img, 1 + int(level * 7.999))


def rescale(img: torch.Tensor, scale: float, method: float) -> torch.Tensor:
    """Crop ``0.25 * scale`` of each side (box rounded half-to-even, as PIL's ``crop`` does), resize back with
    filter ``int(method * 5.99)`` of ``RESCALE_METHODS``."""
    h, w = img.shape[-2:]
    scale *= 0.25
    left, top, right, bottom = (round(v) for v in (scale * w, scale * h, w * (1 - scale), h * (1 - scale)))
    return resize(img[:, top:bottom, left:right], (h, w), RESCALE_METHODS[int(method * 5.99)])


def rotate(img: torch.Tensor, angle: float) -> torch.Tensor:
    """Degrees ``round((2 angle - 1) * 45)`` (half-to-even as ``np.round``), black fill."""
    return ops.rotate(img, int(round((2 * angle - 1) * 45)))


def solarize(img: torch.Tensor, th: float) -> torch.Tensor:
    """Threshold ``int(th * 255.999)``."""
    return ops.solarize(img, int(th * 255.999))


def _signed(level: float, span: float) -> float:
    return (2 * level - 1) * span


CTA_OPS = {
    "autocontrast": (_blend_with(ops.autocontrast), (17,)),
    "blur": (_blend_with(ops.blur), (17,)),
    "brightness": (_enhance(ops.brightness), (17,)),
    "color": (_enhance(ops.color), (17,)),
    "contrast": (_enhance(ops.contrast), (17,)),
    "cutout": (cutout, (17,)),
    "equalize": (_blend_with(ops.equalize), (17,)),
    "invert": (_blend_with(ops.invert), (17,)),
    "identity": (lambda img: img, ()),
    "posterize": (posterize, (8,)),
    "rescale": (rescale, (17, 6)),
    "rotate": (rotate, (17,)),
    "sharpness": (_enhance(ops.sharpness), (17,)),
    "shear_x": (lambda img, v: ops.shear_x(img, _signed(v, 0.3)), (17,)),
    "shear_y": (lambda img, v: ops.shear_y(img, _signed(v, 0.3)), (17,)),
    "smooth": (_blend_with(ops.smooth), (17,)),
    "solarize": (solarize, (17,)),
    "translate_x": (lambda img, v: ops.translate_x(img, _signed(v, 0.3)), (17,)),
    "translate_y": (lambda img, v: ops.translate_y(img, _signed(v, 0.3)), (17,)),
}


def cta_apply(img: torch.Tensor, policy: list, generator=None) -> torch.Tensor:
    """Apply a CTAugment policy ``[(name, [values]), ...]`` to a uint8 RGB image; ``generator`` feeds cutout."""
    for name, values in policy:
        fn = CTA_OPS[name][0]
        img = fn(img, *values, generator=generator) if name == "cutout" else fn(img, *values)
    return img
