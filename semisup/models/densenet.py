"""DenseNet-40 (growth 12, no bottleneck, no compression), the densely connected network that network slimming
(Liu et al., ICCV 2017) pruned.

Every batch norm of a DenseNet reads the concatenated stream, which later layers need whole, so slimming never
narrows a batch norm or a conv's output: each batch norm stays whole and a channel selection after it passes on
only the kept channels to its conv. ``arch`` holds these selections as ``keep``, one entry per batch norm in order
(the layers of each block with a transition after the first two blocks, then the final batch norm; ``None`` keeps
every channel and gathers nothing); all widths follow from the depth and the growth rate.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .preresnet import ChannelSelect, SelectingNet, checked_keep

BLOCKS = 3


class DenseLayer(nn.Module):
    """BN → select → ReLU → 3x3 conv (``growth`` channels), concatenated after its input."""

    def __init__(self, cin: int, growth: int, keep: Optional[Sequence[int]]):
        super().__init__()
        self.bn, self.select = nn.BatchNorm2d(cin), ChannelSelect(cin, keep)
        self.conv = nn.Conv2d(self.select.out_channels, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(F.relu(self.select(self.bn(x))))], 1)


class Transition(nn.Module):
    """BN → select → ReLU → 1x1 conv back to the full width (compression 1) → 2x2 average pool."""

    def __init__(self, cin: int, keep: Optional[Sequence[int]]):
        super().__init__()
        self.bn, self.select = nn.BatchNorm2d(cin), ChannelSelect(cin, keep)
        self.conv = nn.Conv2d(self.select.out_channels, cin, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.select(self.bn(x)))), 2)


class DenseNet(SelectingNet):
    """3x3 stem (2·growth), three blocks of (depth - 4) / 3 layers with transitions between them, then BN → select
    → ReLU → the mean over the map (the original's 8x8 average pool at 32x32) → linear classifier."""

    def __init__(self, num_classes: int = 10, depth: int = 40, growth: int = 12,
                 keep: Optional[Sequence[Optional[Sequence[int]]]] = None):
        super().__init__()
        if depth < 7 or (depth - 4) % 3:
            raise ValueError(f"DenseNet depth must be 3n+4, got {depth}")
        n = (depth - 4) // 3
        widths: List[int] = []  # the input width of every batch norm, in order
        cin = 2 * growth
        for _ in range(BLOCKS):  # each layer's, then a transition's (after the last block, the final one's)
            widths += [cin + growth * i for i in range(n + 1)]
            cin += growth * n
        keep = list(keep) if keep is not None else [None] * len(widths)
        if len(keep) != len(widths):
            raise ValueError(f"keep: expected {len(widths)} entries (one per batch norm), got {len(keep)}")
        keep = [checked_keep(k, w) for k, w in zip(keep, widths)]
        self.arch = {"num_classes": num_classes, "depth": depth, "growth": growth, "keep": keep}
        self.stem = nn.Conv2d(3, 2 * growth, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*[
            Transition(w, k) if (i + 1) % (n + 1) == 0 else DenseLayer(w, growth, k)
            for i, (w, k) in enumerate(zip(widths[:-1], keep[:-1]))])
        self.bn, self.select = nn.BatchNorm2d(widths[-1]), ChannelSelect(widths[-1], keep[-1])
        self.fc = nn.Linear(self.select.out_channels, num_classes)
        self.reset_parameters()
