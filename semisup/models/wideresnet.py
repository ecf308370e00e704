"""Wide ResNet as in the official MixMatch code: pre-activation blocks, leaky ReLU 0.1, BN momentum 0.001.

Every width is explicit (stem, per-stage residual width, per-block inner width) so that a slimmed network is the
same class with smaller numbers, and its shape can be saved next to its weights (``arch``).
"""
import math
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_MOMENTUM = 0.001  # TF's decay 0.999 in PyTorch's convention
BN_EPS = 0.001  # TF's batch_normalization default
LEAKY_SLOPE = 0.1


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)


def same_padding(size: int, kernel: int, stride: int):
    """TF's ``padding='same'`` along one dimension: (before, after), the extra row or column going after.

    The output has ceil(size / stride) positions; the padding is what the last window needs beyond the input, split
    with the odd one at the end. A 3x3 stride-2 convolution on an even input pads (0, 1), not PyTorch's (1, 1).
    """
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2d(nn.Conv2d):
    """A bias-free convolution padded as TF's ``'same'``, as in the official network.

    Stride 1 pads k // 2 on every side (the same as TF for odd kernels). A strided 3x3 convolution pads the input
    asymmetrically by ``same_padding`` first. A strided 1x1 convolution needs no padding and is computed as a stride-1
    convolution of the subsampled input: the same sums, and it avoids PyTorch CPU kernels that corrupt memory in the
    backward pass of a channels-last stride-2 1x1 convolution with fewer than 8 input channels (as a slimmed
    residual stream can have). Every conv feeds a batch norm, directly or through the residual sum, so there is no
    bias (as in the common PyTorch WRN and its 1,467,610 parameters; the official TF layers carry 2,032 more).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, k = self.stride[0], self.kernel_size[0]
        if s == 1:
            return super().forward(x)
        if k == 1:
            return F.conv2d(x[:, :, ::s, ::s], self.weight)
        top, bottom = same_padding(x.shape[-2], k, s)
        left, right = same_padding(x.shape[-1], k, s)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> Conv2d:
    return Conv2d(cin, cout, k, stride)


class Block(nn.Module):
    """Pre-activation residual block: x0 + conv2(act(bn2(conv1(act(bn1(x0)))))).

    ``activate_before_residual`` (first block of the network) feeds the shortcut with act(bn1(x0)) instead of x0.
    bn1's output is always used by conv1, never computed and discarded. ``project`` gives the shortcut a 1x1 conv
    (the first block of every stage), so a slimmed residual stream keeps the structure it was trained with.
    """

    def __init__(self, cin: int, inner: int, cout: int, stride: int, activate_before_residual: bool,
                 project: bool):
        super().__init__()
        self.bn1, self.conv1 = _bn(cin), _conv(cin, inner, 3, stride)
        self.bn2, self.conv2 = _bn(inner), _conv(inner, cout, 3)
        self.shortcut = _conv(cin, cout, 1, stride) if (project or cin != cout or stride != 1) else None
        self.activate_before_residual = activate_before_residual

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.bn1(x0), LEAKY_SLOPE)
        if self.activate_before_residual:
            x0 = x
        out = self.conv2(F.leaky_relu(self.bn2(self.conv1(x)), LEAKY_SLOPE))
        return out + (x0 if self.shortcut is None else self.shortcut(x0))


class WideResNet(nn.Module):
    """The official ResNet; ``rotation_head`` > 0 adds ReMixMatch's dense rotation classifier on the same features
    (``remixmatch_no_cta.py:32-34``): trained, decayed, averaged and saved with the rest, never used to classify."""

    def __init__(self, num_classes: int = 10, stem: int = 16, widths: Sequence[int] = (32, 64, 128),
                 depth: int = 28, inner: Optional[Sequence[int]] = None, rotation_head: int = 0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        repeat = (depth - 4) // 6
        inner = list(inner) if inner is not None else [w for w in widths for _ in range(repeat)]
        if len(inner) != repeat * len(widths):
            raise ValueError(f"inner widths: expected {repeat * len(widths)} values, got {len(inner)}")
        self.arch = {"num_classes": num_classes, "stem": stem, "widths": list(widths), "depth": depth,
                     "inner": inner}
        self.stem = _conv(3, stem, 3)
        blocks: List[nn.Module] = []
        cin = stem
        for s, width in enumerate(widths):
            for r in range(repeat):
                blocks.append(Block(cin, inner[s * repeat + r], width, stride=2 if s and not r else 1,
                                    activate_before_residual=(s == 0 and r == 0), project=(r == 0)))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = _bn(cin)
        self.fc = nn.Linear(cin, num_classes)
        self.rotation_head = None
        self.reset_parameters()
        if rotation_head:
            self.add_rotation_head(rotation_head)

    def add_rotation_head(self, classes: int = 4) -> None:
        """A dense ``classes``-way head on ``features`` (Glorot normal, zero bias), beside the device and dtype of
        ``fc``; saved in ``arch`` so a checkpoint rebuilds it. Nothing if there is one already."""
        if self.rotation_head is not None:
            return
        head = nn.Linear(self.fc.in_features, classes)
        nn.init.xavier_normal_(head.weight)
        nn.init.zeros_(head.bias)
        self.rotation_head = head.to(self.fc.weight.device, self.fc.weight.dtype)
        self.arch["rotation_head"] = classes

    def reset_parameters(self) -> None:
        """The official initialisation: conv ~ N(0, 2/(k*k*cout)), dense Glorot normal, zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0]
                nn.init.normal_(m.weight, std=math.sqrt(2.0 / (k * k * m.out_channels)))
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return F.leaky_relu(self.bn(x), LEAKY_SLOPE).mean((2, 3))

    def forward(self, x: torch.Tensor, rotation: bool = False) -> torch.Tensor:
        """Class logits, or with ``rotation`` the rotation head's logits (through the same call, so DDP and
        ``torch.compile`` see every pass)."""
        return (self.rotation_head if rotation else self.fc)(self.features(x))
