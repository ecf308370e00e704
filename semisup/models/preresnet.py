"""Pre-activation bottleneck ResNet-164, the residual network network slimming (Liu et al., ICCV 2017) pruned.

Slimming removes the channels behind small batch-norm γ, but a block's first batch norm (and the final one) reads
the residual stream, which the identity path needs whole. So that batch norm stays whole and a channel selection
after it passes on only the kept channels, which the block's first convolution then reads. ``arch`` holds that
selection as ``keep`` (one entry per selecting batch norm: each block's first, then the final one; ``None`` keeps
every channel and gathers nothing) and each block's in-branch widths as ``cfg`` (the selected input, the 1x1 conv's
output, the 3x3 conv's output). The stream widths (64/128/256) are fixed by the depth alone.

``ChannelSelect`` is shared with the DenseNet, whose every batch norm reads the concatenated stream.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .vgg import init_slimming

STEM = 16
PLANES = (16, 32, 64)  # the bottleneck's inner width per stage; the stream is four times as wide
EXPANSION = 4


def checked_keep(keep: Optional[Sequence[int]], width: int) -> Optional[List[int]]:
    """``keep`` as a list of ints, or ``None`` when it keeps every channel; refused unless it is increasing, in range
    and not empty (the order the narrower conv's input channels are sliced in)."""
    if keep is None:
        return None
    keep = [int(i) for i in keep]
    if not keep or keep[0] < 0 or keep[-1] >= width or any(a >= b for a, b in zip(keep, keep[1:])):
        raise ValueError(f"keep must be increasing channel indices in [0, {width}), got {keep}")
    return None if len(keep) == width else keep


class ChannelSelect(nn.Module):
    """The channels ``keep`` of a ``width``-channel input (``torch.index_select``), or the input itself.

    The indices are a buffer so that they follow the model to its device; not a persistent one, since ``arch``
    already holds them and the state dict then has the same keys as the unpruned network's.
    """

    def __init__(self, width: int, keep: Optional[Sequence[int]] = None):
        super().__init__()
        keep = checked_keep(keep, width)
        self.out_channels = width if keep is None else len(keep)
        self.register_buffer("index", None if keep is None else torch.tensor(keep), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.index is None else torch.index_select(x, 1, self.index)


class SelectingNet(nn.Module):
    """What ResNet-164 and DenseNet-40 share: a stem, blocks, then the final batch norm → selection → ReLU → the
    mean over the map (the original's 8x8 average pool at 32x32) → the linear classifier ``fc``; network
    slimming's initialisation."""

    def reset_parameters(self) -> None:
        init_slimming(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return F.relu(self.select(self.bn(x))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class Bottleneck(nn.Module):
    """BN → select → ReLU → 1x1 conv → BN → ReLU → 3x3 conv (stride) → BN → ReLU → 1x1 conv, plus the input
    (through a strided 1x1 conv in a stage's first block, where the stream widens)."""

    def __init__(self, cin: int, widths: Sequence[int], cout: int, stride: int, keep: Optional[Sequence[int]],
                 project: bool):
        super().__init__()
        _, c1, c2 = widths
        self.bn1, self.select = nn.BatchNorm2d(cin), ChannelSelect(cin, keep)
        self.conv1 = nn.Conv2d(self.select.out_channels, c1, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c1), nn.Conv2d(c1, c2, 3, stride=stride, padding=1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(c2), nn.Conv2d(c2, cout, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.select(self.bn1(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class PreResNet(SelectingNet):
    """3x3 stem (16), three stages of n = (depth - 2) / 9 bottlenecks at strides 1, 2, 2, then BN → select → ReLU →
    the mean over the map (the original's 8x8 average pool at 32x32) → linear classifier."""

    def __init__(self, num_classes: int = 10, depth: int = 164, cfg: Optional[Sequence[Sequence[int]]] = None,
                 keep: Optional[Sequence[Optional[Sequence[int]]]] = None):
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"PreResNet depth must be 9n+2, got {depth}")
        n = (depth - 2) // 9
        ins, cin = [], STEM  # each block's input (stream) width, then the final batch norm's
        for planes in PLANES:
            ins += [cin] + [EXPANSION * planes] * (n - 1)
            cin = EXPANSION * planes
        ins.append(cin)
        keep = list(keep) if keep is not None else [None] * len(ins)
        if len(keep) != len(ins):
            raise ValueError(f"keep: expected {len(ins)} entries (one per block, then the final BN), got {len(keep)}")
        keep = [checked_keep(k, w) for k, w in zip(keep, ins)]
        selected = [w if k is None else len(k) for k, w in zip(keep, ins)]
        planes = [p for p in PLANES for _ in range(n)]
        cfg = [list(c) for c in cfg] if cfg is not None else [[s, p, p] for s, p in zip(selected, planes)]
        if len(cfg) != 3 * n or any(len(c) != 3 or min(c) < 1 for c in cfg):
            raise ValueError(f"cfg: expected {3 * n} triples of positive widths, got {cfg}")
        if [c[0] for c in cfg] != selected[:-1]:
            raise ValueError("cfg: each block's first width must be the number of channels its keep selects")
        self.arch = {"num_classes": num_classes, "depth": depth, "cfg": cfg, "keep": keep}
        self.stem = nn.Conv2d(3, STEM, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*[
            Bottleneck(ins[b], cfg[b], EXPANSION * planes[b], stride=2 if b % n == 0 and b else 1, keep=keep[b],
                       project=b % n == 0)
            for b in range(3 * n)])
        self.bn, self.select = nn.BatchNorm2d(ins[-1]), ChannelSelect(ins[-1], keep[-1])
        self.fc = nn.Linear(self.select.out_channels, num_classes)
        self.reset_parameters()
