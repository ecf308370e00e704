"""PIL's ``Image.resize`` for uint8 images, the resampling behind CTAugment's ``rescale``.

torchvision's antialiased resize covers only bilinear and bicubic and rounds its weights its own way; CTAugment
draws one of six PIL filters, so PIL's separable convolution is ported: per output pixel, the filter's weights over
its support (widened when shrinking), normalised, turned into 22-bit fixed point, a horizontal pass then a vertical
one, each rounded and clipped to uint8. NEAREST is PIL's scaling affine map.
"""
import functools
import math
import struct

import torch

from .ops import _scale_index

PRECISION_BITS = 22


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


# Pillow's hamming filter writes its constants as C floats (0.54f, 0.46f): their double values, not 0.54 and 0.46.
HAMMING_A, HAMMING_B = struct.unpack("2f", struct.pack("2f", 0.54, 0.46))


def _hamming(x: float) -> float:
    x = abs(x)
    if x == 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    x *= math.pi
    return math.sin(x) / x * (HAMMING_A + HAMMING_B * math.cos(x))


def _bicubic(x: float) -> float:
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


FILTERS = {"lanczos": (_lanczos, 3.0), "bicubic": (_bicubic, 2.0), "bilinear": (_bilinear, 1.0),
           "box": (_box, 0.5), "hamming": (_hamming, 1.0)}


@functools.lru_cache(maxsize=256)
def _weights(in_size: int, out_size: int, name: str) -> torch.Tensor:
    """PIL's precompute_coeffs + normalize_coeffs_8bpc as an (out, in) int64 matrix of 22-bit weights; cached,
    since a crop of a 32-pixel image has few sizes (callers must not write into it). The double arithmetic is
    PIL's step for step: the filter argument times ``1.0 / filterscale`` (not divided by it) and a plain running
    sum (Python's ``sum`` of floats compensates from 3.12), else a weight can round to the other integer."""
    fn, support = FILTERS[name]
    scale = in_size / out_size
    fscale = max(scale, 1.0)
    support *= fscale
    out = torch.zeros(out_size, in_size, dtype=torch.int64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        ss = 1.0 / fscale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
        w = [fn((x + lo - center + 0.5) * ss) for x in range(hi - lo)]
        total = 0.0
        for v in w:
            total += v
        for x, v in enumerate(w):
            v = v / total if total != 0.0 else v
            out[i, lo + x] = int(v * (1 << PRECISION_BITS) + (0.5 if v >= 0 else -0.5))
    return out


def _pass(img: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """One separable pass along the last axis, PIL's rounding and clipping."""
    acc = img.long() @ weights.T + (1 << (PRECISION_BITS - 1))
    return (acc >> PRECISION_BITS).clamp_(0, 255).to(torch.uint8)


def resize(img: torch.Tensor, size: tuple, method: str) -> torch.Tensor:
    """``Image.resize((w, h), method)`` of a uint8 (C, H, W) image to ``size`` = (h, w)."""
    h, w = img.shape[-2:]
    oh, ow = size
    if method == "nearest":
        rows = _scale_index(h / oh * 0.5, h / oh, oh)
        cols = _scale_index(w / ow * 0.5, w / ow, ow)
        return img[:, rows[:, None], cols[None, :]]
    out = img
    if ow != w:
        out = _pass(out, _weights(w, ow, method))
    if oh != h:
        out = _pass(out.transpose(-1, -2), _weights(h, oh, method)).transpose(-1, -2)
    return out.contiguous()
