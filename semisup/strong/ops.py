"""Pixel operations of the official strong augmentations, on uint8 images (C, H, W), in physical units.

The official RandAugment and CTAugment (google-research/fixmatch) are PIL operations. Each function here computes
what its PIL counterpart computes on the same uint8 image, so a run here sees the images the official runs saw:
torchvision's function where it agrees with PIL to the bit (brightness, equalize, invert, posterize), and a port
of PIL's own arithmetic where torchvision rounds differently or lacks the op (blends, gray conversion,
autocontrast, 3x3/5x5 filters, nearest-neighbour affine maps, solarize at threshold 256). The level-to-value
mappings of the two policies live in ``randaugment`` and ``cta_ops``; ``docs/augmentation.md`` lists each op.
"""
import math

import torch
import torchvision.transforms.v2.functional as TF

BLACK = 0
GRAY = 127  # the official CTAugment cutout fill; RandAugment's gray (0.0 in [-1, 1]) is 127.5, half a level away


def blend(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """``Image.blend(a, b, alpha)``: ``a + alpha * (b - a)`` in float32, clipped and truncated as PIL does
    (torchvision's ``a * (1 - alpha) + b * alpha`` rounds differently and is off by one level on some pixels)."""
    af = a.float()
    return (af + torch.tensor(alpha, dtype=torch.float32) * (b.float() - af)).clamp_(0, 255).to(torch.uint8)


def gray(img: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L conversion, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``, as a (1, H, W) image."""
    r, g, b = img.int().unbind(0)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)[None]


def brightness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """``ImageEnhance.Brightness(img).enhance(factor)``, a blend with black; torchvision computes the same."""
    return TF.adjust_brightness(img, factor)


def color(img: torch.Tensor, factor: float) -> torch.Tensor:
    """``ImageEnhance.Color``: a blend with the image's own PIL gray version."""
    return blend(gray(img).expand_as(img), img, factor)


def contrast(img: torch.Tensor, factor: float) -> torch.Tensor:
    """``ImageEnhance.Contrast``: a blend with a flat image at the gray mean rounded to an integer, as PIL does:
    ``int(sum / count + 0.5)`` with the integer sum and count divided in Python, not by a torch reduction."""
    levels = gray(img)
    mean = int(int(levels.sum()) / levels.numel() + 0.5)
    return blend(torch.full_like(img, mean), img, factor)


def sharpness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """``ImageEnhance.Sharpness``: a blend with ``ImageFilter.SMOOTH`` (factor > 1 sharpens)."""
    return blend(smooth(img), img, factor)


def _filter(img: torch.Tensor, kernel: list, scale: int) -> torch.Tensor:
    """PIL's ImagingFilter3x3/5x5 for a symmetric kernel: a float32 sum per row of the kernel in PIL's order, plus
    0.5, truncated; the border of width k//2 is copied unchanged."""
    k = len(kernel)
    r = k // 2
    h, w = img.shape[-2:]
    if h < k or w < k:
        return img.clone()
    weights = torch.tensor(kernel, dtype=torch.float32) / scale
    x = img.float()
    acc = torch.full((img.shape[0], h - 2 * r, w - 2 * r), 0.5, dtype=torch.float32)
    for i in range(k):
        rows = x[:, i:h - 2 * r + i]
        line = rows[..., 0:w - 2 * r] * weights[i, 0]
        for j in range(1, k):
            line = line + rows[..., j:w - 2 * r + j] * weights[i, j]
        acc = acc + line
    out = img.clone()
    out[:, r:h - r, r:w - r] = acc.clamp_(0, 255).to(torch.uint8)
    return out


def smooth(img: torch.Tensor) -> torch.Tensor:
    """``img.filter(ImageFilter.SMOOTH)``: 3x3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13."""
    return _filter(img, [[1, 1, 1], [1, 5, 1], [1, 1, 1]], 13)


def blur(img: torch.Tensor) -> torch.Tensor:
    """``img.filter(ImageFilter.BLUR)``: a 5x5 ring of ones / 16."""
    ring = [[1, 1, 1, 1, 1]] + [[1, 0, 0, 0, 1]] * 3 + [[1, 1, 1, 1, 1]]
    return _filter(img, ring, 16)


def _lut(img: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    """Apply one 256-entry lookup table per channel."""
    return torch.gather(luts.to(torch.uint8), 1, img.reshape(img.shape[0], -1).long()).reshape(img.shape)


def autocontrast(img: torch.Tensor) -> torch.Tensor:
    """``ImageOps.autocontrast`` (cutoff 0): per channel, ``int(i * scale + offset)`` clipped, with ``scale =
    255.0 / (hi - lo)`` and ``offset = -lo * scale`` computed in Python floats as PIL computes them; a flat channel is
    left alone. Not ``255.0 / tensor``: torch divides a number by a tensor as ``255 * reciprocal(t)``, one unit in
    the last place low for 11 % of the (lo, hi) pairs, which truncates the entry for ``hi`` to 254."""
    flat = img.reshape(img.shape[0], -1)
    lows, highs = flat.amin(1).tolist(), flat.amax(1).tolist()
    scales = [255.0 / (hi - lo) if hi > lo else 1.0 for lo, hi in zip(lows, highs)]
    offsets = [-lo * scale if hi > lo else 0.0 for lo, hi, scale in zip(lows, highs, scales)]
    ramp = torch.arange(256, dtype=torch.float64)
    scale, offset = torch.tensor(scales, dtype=torch.float64), torch.tensor(offsets, dtype=torch.float64)
    return _lut(img, (ramp[None] * scale[:, None] + offset[:, None]).trunc().clamp(0, 255))


def equalize(img: torch.Tensor) -> torch.Tensor:
    """``ImageOps.equalize``; torchvision's port of PIL's integer rule computes the same."""
    return TF.equalize(img)


def invert(img: torch.Tensor) -> torch.Tensor:
    """``ImageOps.invert``; torchvision computes the same."""
    return TF.invert(img)


def posterize(img: torch.Tensor, bits: int) -> torch.Tensor:
    """``ImageOps.posterize``: keep the top ``bits`` bits (1..8); torchvision computes the same."""
    return TF.posterize(img, bits)


def solarize(img: torch.Tensor, threshold: int) -> torch.Tensor:
    """``ImageOps.solarize``: invert the levels >= threshold (0..256; 256 changes nothing, which torchvision's
    ``solarize`` refuses, so the same ``where`` is written out)."""
    if threshold > 255:
        return img.clone()
    return torch.where(img >= threshold, 255 - img, img)


def affine(img: torch.Tensor, matrix, fill: int = BLACK) -> torch.Tensor:
    """``img.transform(size, Image.AFFINE, matrix)`` with NEAREST: output pixel (x, y) reads the input at
    ``(a x' + b y' + c, d x' + e y' + f)`` with x' = x + 0.5, y' = y + 0.5, floored.

    PIL computes this in 16.16 fixed point (a scaling-only matrix in double precision); both are reproduced so
    the pixels that fall on a boundary go the same way. Outside the image: ``fill``.
    """
    a, b, c, d, e, f = matrix
    h, w = img.shape[-2:]
    xs, ys = torch.arange(w, dtype=torch.int64), torch.arange(h, dtype=torch.int64)
    if b == 0 and d == 0:
        col = _scale_index(c + a * 0.5, a, w)[None, :].expand(h, w)
        row = _scale_index(f + e * 0.5, e, h)[:, None].expand(h, w)
    else:
        fx = [math.floor(v * 65536.0 + 0.5) for v in (a, b, c + a * 0.5 + b * 0.5, d, e, f + d * 0.5 + e * 0.5)]
        col = (fx[2] + ys[:, None] * fx[1] + xs[None] * fx[0]) >> 16
        row = (fx[5] + ys[:, None] * fx[4] + xs[None] * fx[3]) >> 16
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    out = img[:, row.clamp(0, h - 1), col.clamp(0, w - 1)]
    return torch.where(inside, out, torch.tensor(fill, dtype=img.dtype))


def _scale_index(start: float, step: float, n: int) -> torch.Tensor:
    """PIL's ImagingScaleAffine table: ``start`` advanced by ``step`` in double precision, floored (-1 below 0)."""
    out, v = [], start
    for _ in range(n):
        out.append(-1 if v < 0 else int(v))
        v += step
    return torch.tensor(out, dtype=torch.int64)


def rotate(img: torch.Tensor, degrees: float, fill: int = BLACK) -> torch.Tensor:
    """``img.rotate(degrees)``: counter-clockwise about the centre (w/2, h/2), NEAREST, PIL's inverse matrix."""
    h, w = img.shape[-2:]
    if degrees % 360 == 0:
        return img.clone()
    angle = -math.radians(degrees % 360.0)
    a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
    d, e = round(-math.sin(angle), 15), round(math.cos(angle), 15)
    cx, cy = w / 2, h / 2
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    return affine(img, (a, b, c, d, e, f), fill)


def shear_x(img: torch.Tensor, shear: float, fill: int = BLACK) -> torch.Tensor:
    """Affine ``(1, shear, 0, 0, 1, 0)``: x reads from x + shear * y, about the top-left corner."""
    return affine(img, (1, shear, 0, 0, 1, 0), fill)


def shear_y(img: torch.Tensor, shear: float, fill: int = BLACK) -> torch.Tensor:
    """Affine ``(1, 0, 0, shear, 1, 0)``: y reads from y + shear * x, about the top-left corner."""
    return affine(img, (1, 0, 0, shear, 1, 0), fill)


def translate_x(img: torch.Tensor, pixels: float, fill: int = BLACK) -> torch.Tensor:
    """Affine ``(1, 0, pixels, 0, 1, 0)``: the content moves left by ``pixels`` (PIL's sign)."""
    return affine(img, (1, 0, pixels, 0, 1, 0), fill)


def translate_y(img: torch.Tensor, pixels: float, fill: int = BLACK) -> torch.Tensor:
    """Affine ``(1, 0, 0, 0, 1, pixels)``: the content moves up by ``pixels`` (PIL's sign)."""
    return affine(img, (1, 0, 0, 0, 1, pixels), fill)


def cutout(img: torch.Tensor, top: int, left: int, bottom: int, right: int, fill: int = GRAY) -> torch.Tensor:
    """Paint rows [top, bottom) and columns [left, right) with ``fill``; the policies draw the box."""
    out = img.clone()
    out[:, max(top, 0):bottom, max(left, 0):right] = fill
    return out
