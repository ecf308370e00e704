"""Batch augmentation on uint8 tensors: random horizontal flip, reflect-pad, random crop of the original size.

One gather does flip and crop for the whole batch on whatever device the images live on: no PIL, no per-image
Python. The random draws come from the CPU generator so runs are reproducible across devices. The pad and the flip
are the dataset's (``semisup.datasets``): CIFAR flips and pads 4 (the defaults here), SVHN pads 4 without a flip
(mirrored digits are other digits or none), STL-10 flips and pads 12 on 96x96.
"""
import torch

from .datasets import Dataset
from .runtime import to_device

PAD = 4


def augment_params(n: int, size: int = 32, generator=None, pad: int = PAD, flip: bool = True):
    """Draw (flip, dy, dx) for n images: flip in {0, 1} (all 0 without ``flip``), offsets in [0, 2*pad].

    With the defaults the draws are those CIFAR runs have always made (flip first, then the offsets); without a
    flip no flip is drawn at all.
    """
    flips = (torch.randint(0, 2, (n,), generator=generator, dtype=torch.bool) if flip
             else torch.zeros(n, dtype=torch.bool))
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    return flips, offsets[0], offsets[1]


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Map coordinates of the reflect-padded image back into [0, size)."""
    i = i.abs()
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def flip_pad_crop(images: torch.Tensor, flip: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                  pad: int = PAD) -> torch.Tensor:
    """Reflect-pad by ``pad``, crop at (dy, dx), then mirror the crop where ``flip``: like torchvision's
    RandomCrop(size, padding=pad, padding_mode="reflect") followed by RandomHorizontalFlip, batched.

    The padding is never materialised: crop coordinates are reflected back into the original image and
    gathered in one indexing operation, which works for uint8 on any device.
    """
    n, c, h, w = images.shape
    device = images.device
    ar_h, ar_w = torch.arange(h, device=device), torch.arange(w, device=device)
    flip, dy, dx = to_device(flip, device), to_device(dy, device), to_device(dx, device)
    rows = _reflect(dy[:, None] + ar_h - pad, h)  # [n, h]
    cols = _reflect(dx[:, None] + torch.where(flip[:, None], w - 1 - ar_w, ar_w) - pad, w)  # [n, w]
    batch = torch.arange(n, device=device)[:, None, None, None]
    chan = torch.arange(c, device=device)[None, :, None, None]
    return images[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def augment(images: torch.Tensor, generator=None, pad: int = PAD, flip: bool = True) -> torch.Tensor:
    """Augment a uint8 batch [N, C, H, W] with fresh random draws (the dataset's ``pad`` and ``flip``)."""
    if pad >= min(images.shape[-2:]):
        raise ValueError(f"reflect padding {pad} needs images larger than {pad} pixels, got {list(images.shape)}")
    return flip_pad_crop(images, *augment_params(len(images), generator=generator, pad=pad, flip=flip), pad=pad)


def to_float(images: torch.Tensor, memory_format=torch.contiguous_format) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the official code's input scaling."""
    return images.to(memory_format=memory_format).float().mul_(2.0 / 255.0).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """The uint8 images a ``to_float`` batch came from (exact: 255·(x + 1)/2 is within rounding of an integer)."""
    return x.float().add(1.0).mul_(255.0 / 2.0).round_().to(torch.uint8).contiguous()


def draw_views(images: Dataset, idx: torch.Tensor, count: int, memory_format=torch.contiguous_format,
               generator=None, pad: int = PAD, flip: bool = True, strong=None, strong_count: int = 0):
    """``count`` independently augmented float views of the images at ``idx``, then ``strong_count`` views that
    ``strong`` (uint8 → uint8: RandAugment, CTAugment) augments after their own flip and crop, and their labels.
    ``pad`` and ``flip`` are the dataset's (``SSLData.pad``, ``SSLData.flip``)."""
    raw = images.images[idx]
    weak = [augment(raw, generator, pad, flip) for _ in range(count)]
    strong_views = [strong(augment(raw, generator, pad, flip)) for _ in range(strong_count)]
    return [to_float(v, memory_format) for v in weak + strong_views], images.labels[idx]
