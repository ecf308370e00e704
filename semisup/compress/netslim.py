"""Network slimming's surgery on its own networks: VGG-19, the pre-activation ResNet-164 and DenseNet-40.

Every batch norm is scored by |γ| and one global threshold (``slimming.select_channels``, with its per-layer cap:
never a layer emptied, the failure of the original at VGG-19 70 %) picks the channels to drop, as the original
``vggprune.py``, ``resprune.py`` and ``denseprune.py`` do. Where they remove them:

- VGG: a plain chain, so each conv loses output channels, its batch norm the same, the next conv (or the
  classifier) the matching input channels.
- ResNet-164: a block's first batch norm and the final one read the residual stream, which the identity path needs
  whole; they stay whole and their ``ChannelSelect`` keeps the chosen channels, which the next conv alone reads
  (its input is sliced). The bottleneck's inner batch norms are sliced with the conv before and after them. The
  stream, the last conv of each block and the shortcuts keep their widths.
- DenseNet-40: every batch norm reads the concatenated stream: each stays whole, its selection keeps the chosen
  channels, and its conv's input is sliced; conv outputs (the growth and the transitions) keep their widths.

A batch norm whose output is already selected (a network slimmed before) is scored on its selected channels only,
and the new selection is composed with the old one. ``mask_channels`` is the same cut done by zeroing γ and β of the
dropped channels on a copy of the full network: ReLU then passes zeros, so in eval mode both compute the same
function (the tests check it to 1e-5 for each network).
"""
import copy
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from ..models.densenet import DenseNet
from ..models.preresnet import PreResNet
from ..models.vgg import VGG
from .slimming import select_channels

NETWORKS = (VGG, PreResNet, DenseNet)
Unit = Tuple[nn.BatchNorm2d, Optional[nn.Module]]  # a batch norm and the ChannelSelect after it (or None)


def is_slimming_network(model: nn.Module) -> bool:
    return isinstance(model, NETWORKS)


def units(model: nn.Module) -> List[Unit]:
    """Every batch norm of the network in forward order, each with the selection that follows it."""
    if isinstance(model, VGG):
        return [(m, None) for m in model.layers if isinstance(m, nn.BatchNorm2d)]
    if isinstance(model, PreResNet):
        inner = [[(b.bn1, b.select), (b.bn2, None), (b.bn3, None)] for b in model.blocks]
        return [u for block in inner for u in block] + [(model.bn, model.select)]
    if isinstance(model, DenseNet):
        return [(layer.bn, layer.select) for layer in model.blocks] + [(model.bn, model.select)]
    raise TypeError(f"{type(model).__name__} is not one of network slimming's networks")


def _selected(select: Optional[nn.Module], width: int) -> torch.Tensor:
    """The channels (of ``width``) that currently reach the next conv."""
    index = getattr(select, "index", None)
    return torch.arange(width) if index is None else index.cpu()


def scores(model: nn.Module) -> List[torch.Tensor]:
    """|γ| of each unit's channels that reach its conv."""
    return [bn.weight.detach().abs().cpu()[_selected(sel, len(bn.weight))] for bn, sel in units(model)]


def plan(model: nn.Module, ratio: float, scope: str = "global", max_layer_ratio: float = 0.9,
         multiple: int = 1) -> List[torch.Tensor]:
    """Per unit, the kept positions among its selected channels (``select_channels`` on |γ|)."""
    if not units(model):
        raise ValueError("the network has no batch norm: network slimming ranks channels by their batch-norm γ")
    return select_channels(scores(model), ratio, scope, max_layer_ratio, multiple)


def _full(select: Optional[nn.Module], width: int, keep: torch.Tensor) -> torch.Tensor:
    """Kept positions among the selected channels, as channel indices of the whole batch norm."""
    return _selected(select, width)[keep]


def _slice(t: torch.Tensor, dim: int, idx: Optional[torch.Tensor]) -> torch.Tensor:
    return t if idx is None else t.index_select(dim, idx.to(t.device))


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, idx: Optional[torch.Tensor] = None) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(_slice(getattr(src, name), 0, idx))
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _copy_conv(dst: nn.Conv2d, src: nn.Conv2d, out_idx=None, in_idx=None) -> None:
    dst.weight.copy_(_slice(_slice(src.weight, 0, out_idx), 1, in_idx))


def _copy_fc(dst: nn.Linear, src: nn.Linear, in_idx) -> None:
    dst.weight.copy_(_slice(src.weight, 1, in_idx))
    dst.bias.copy_(src.bias)


def _vgg(model: VGG, keeps: List[torch.Tensor]) -> VGG:
    widths = iter(len(k) for k in keeps)
    cfg = [v if v == "M" else next(widths) for v in model.arch["cfg"]]
    small = VGG(model.arch["num_classes"], cfg)
    convs = [(d, s) for d, s in zip(small.layers, model.layers) if isinstance(s, nn.Conv2d)]
    bns = [(d, s) for d, s in zip(small.layers, model.layers) if isinstance(s, nn.BatchNorm2d)]
    previous = None
    for (dconv, sconv), (dbn, sbn), keep in zip(convs, bns, keeps):
        _copy_conv(dconv, sconv, keep, previous)
        _copy_bn(dbn, sbn, keep)
        previous = keep
    _copy_fc(small.fc, model.fc, previous)
    return small


def _preresnet(model: PreResNet, keeps: List[torch.Tensor]) -> PreResNet:
    per_block = [keeps[3 * b:3 * b + 3] for b in range(len(model.blocks))]
    selections = [_full(b.select, len(b.bn1.weight), k[0]).tolist() for b, k in zip(model.blocks, per_block)]
    selections.append(_full(model.select, len(model.bn.weight), keeps[-1]).tolist())
    cfg = [[len(k) for k in ks] for ks in per_block]
    small = PreResNet(model.arch["num_classes"], model.arch["depth"], cfg=cfg, keep=selections)
    _copy_conv(small.stem, model.stem)
    for dst, src, (k1, k2, k3) in zip(small.blocks, model.blocks, per_block):
        _copy_bn(dst.bn1, src.bn1)
        _copy_conv(dst.conv1, src.conv1, k2, k1)
        _copy_bn(dst.bn2, src.bn2, k2)
        _copy_conv(dst.conv2, src.conv2, k3, k2)
        _copy_bn(dst.bn3, src.bn3, k3)
        _copy_conv(dst.conv3, src.conv3, None, k3)
        if src.shortcut is not None:
            _copy_conv(dst.shortcut, src.shortcut)
    _copy_bn(small.bn, model.bn)
    _copy_fc(small.fc, model.fc, keeps[-1])
    return small


def _densenet(model: DenseNet, keeps: List[torch.Tensor]) -> DenseNet:
    layers = list(model.blocks)
    selections = [_full(m.select, len(m.bn.weight), k).tolist() for m, k in zip(layers + [model], keeps)]
    small = DenseNet(model.arch["num_classes"], model.arch["depth"], model.arch["growth"], keep=selections)
    _copy_conv(small.stem, model.stem)
    for dst, src, keep in zip(small.blocks, layers, keeps):
        _copy_bn(dst.bn, src.bn)
        _copy_conv(dst.conv, src.conv, None, keep)
    _copy_bn(small.bn, model.bn)
    _copy_fc(small.fc, model.fc, keeps[-1])
    return small


@torch.no_grad()
def remove_channels(model: nn.Module, keeps: List[torch.Tensor]) -> nn.Module:
    """A new, smaller network of the same kind holding only the kept channels (mode, device and dtype kept)."""
    build = {VGG: _vgg, PreResNet: _preresnet, DenseNet: _densenet}[type(model)]
    ref = next(model.parameters())
    small = build(model, [k.cpu() for k in keeps]).to(ref.device, ref.dtype)
    return small.train(model.training)


@torch.no_grad()
def fold_selections(model: nn.Module) -> nn.Module:
    """The same function without any channel gather: each selection is folded into the conv after it, which then
    reads every channel of its batch norm with zero weights on the dropped ones (the dropped channels' MACs come
    back; ``benchmarks/bench_slim_networks.py`` measures which form runs faster). VGG has no selection."""
    if isinstance(model, VGG):
        return copy.deepcopy(model)
    arch = dict(model.arch, keep=[None] * len(model.arch["keep"]))
    if isinstance(model, PreResNet):
        arch["cfg"] = [[b.bn1.num_features, c1, c2] for b, (_, c1, c2) in zip(model.blocks, model.arch["cfg"])]
    wide = type(model)(**arch)
    shapes = {k: v.shape for k, v in wide.state_dict().items()}
    wide.load_state_dict({k: v for k, v in model.state_dict().items() if v.shape == shapes[k]}, strict=False)
    conv = "conv1" if isinstance(model, PreResNet) else "conv"  # the conv that reads each selection
    for w, m in zip(wide.blocks, model.blocks):
        dst, src, select = getattr(w, conv), getattr(m, conv), m.select
        dst.weight.zero_()
        dst.weight[:, _selected(select, dst.in_channels)] = src.weight
    wide.fc.weight.zero_()
    wide.fc.weight[:, _selected(model.select, wide.fc.in_features)] = model.fc.weight
    ref = next(model.parameters())
    return wide.to(ref.device, ref.dtype).train(model.training)


@torch.no_grad()
def mask_channels(model: nn.Module, keeps: List[torch.Tensor]) -> nn.Module:
    """A full-size copy of ``model`` in which every dropped channel's γ and β are zero."""
    masked = copy.deepcopy(model)
    for (bn, select), keep in zip(units(masked), keeps):
        zero_dropped_(bn, keep, select)
    return masked


@torch.no_grad()
def zero_dropped_(bn: nn.BatchNorm2d, keep: torch.Tensor, select: Optional[nn.Module] = None) -> None:
    """γ = β = 0 on every channel of ``bn`` that reaches the next conv (all of them without ``select``) but is not
    among the ``keep`` positions: the activation after it passes zeros, as if the channel were removed. Any batch
    norm whose channels feed a conv only (the WRN's bn2 too) can be masked this way."""
    gone = torch.zeros(len(bn.weight), dtype=torch.bool)
    gone[_selected(select, len(bn.weight))] = True
    gone[_full(select, len(bn.weight), keep)] = False
    bn.weight[gone.to(bn.weight.device)] = 0
    bn.bias[gone.to(bn.bias.device)] = 0

