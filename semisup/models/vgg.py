"""VGG-19 with batch norm, the first network that network slimming (Liu et al., ICCV 2017) pruned on CIFAR.

VGG is a plain chain of convolutions, so a slimmed VGG is only narrower convolutions: its whole shape is the list
of conv widths with ``"M"`` where a 2x2 max pool halves the map (``cfg``), saved in ``arch`` so that the same class
rebuilds a pruned network from smaller numbers.

``init_slimming`` is the initialisation that all three of the paper's networks share.
"""
import math
from typing import List, Sequence, Union

import torch
import torch.nn as nn

VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
# The depths network slimming's vgg.py defines (its defaultcfg): conv layers + the classifier.
DEPTHS = {11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
          13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
          16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
          19: VGG19}
BN_GAMMA = 0.5


def init_slimming(model: nn.Module) -> None:
    """Network slimming's initialisation: batch-norm γ = 0.5, β = 0; convs N(0, 2/(k·k·cout)); classifier bias 0.

    γ is each channel's scaling factor, the quantity the sparsity penalty s·Σ|γ| drives to zero; the paper's
    networks start it at 0.5, not PyTorch's 1, and the penalty strengths and pruning ratios it reports assume that
    start. The classifier keeps PyTorch's default weights.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            nn.init.normal_(m.weight, std=math.sqrt(2.0 / (k * m.out_channels)))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, BN_GAMMA)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


class VGG(nn.Module):
    """conv3x3 (no bias) → BN → ReLU for each width of ``cfg``, a 2x2 max pool at each ``"M"``; then the mean over
    the final map and one linear classifier.

    At 32x32 the last map is 2x2 and its mean is the original's 2x2 average pool; the mean also keeps the
    classifier as wide as the last conv at other image sizes.
    """

    def __init__(self, num_classes: int = 10, cfg: Sequence[Union[int, str]] = VGG19):
        super().__init__()
        cfg = [v if v == "M" else int(v) for v in cfg]
        if not any(v != "M" for v in cfg) or any(v != "M" and v < 1 for v in cfg):
            raise ValueError(f"VGG cfg needs positive conv widths (and 'M' for pooling), got {cfg}")
        self.arch = {"num_classes": num_classes, "cfg": cfg}
        layers: List[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_slimming(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
