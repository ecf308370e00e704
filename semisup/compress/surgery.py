"""Physical channel removal: a WideResNet with smaller ``inner`` (and, optionally, stream ``widths``).

``remove_channels`` copies the kept slices of every tensor into a freshly built network of the smaller shape; its
``arch`` rebuilds it anywhere (``train.py --init``, evaluation). ``mask_channels`` is the same cut done by
zeroing, on the full-size network: the removed in-branch channels' bn2 γ and β, and for a removed stream channel
every filter that writes it and the γ and β of every batch norm that reads it. In eval mode the two compute the
same function (that is what the tests check); the removed channels' β is dropped, as network slimming does.
"""
import copy
from typing import List, Optional

import torch
import torch.nn as nn

from ..masks import effective_weight
from .slimming import stages, stream_readers, stream_writers

Keep = Optional[torch.Tensor]


def _take(t: torch.Tensor, dim: int, idx: Keep) -> torch.Tensor:
    return t if idx is None else t.index_select(dim, idx.to(t.device))


def _copy_conv(dst: nn.Conv2d, src: nn.Conv2d, out_idx: Keep, in_idx: Keep) -> None:
    dst.weight.copy_(_take(_take(effective_weight(src), 0, out_idx), 1, in_idx))


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, idx: Keep) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(_take(getattr(src, name), 0, idx))
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def block_streams(model: nn.Module, stream_keep: Optional[List[Keep]]):
    """(stream channels kept at each block's input, at its output), None meaning all of them."""
    groups = stages(model)
    stream_keep = stream_keep or [None] * len(groups)
    out = []
    for s, blocks in enumerate(groups):
        for r in range(len(blocks)):
            out.append((None if s == 0 and r == 0 else stream_keep[s - 1 if r == 0 else s], stream_keep[s]))
    return out


@torch.no_grad()
def remove_channels(model: nn.Module, inner_keep: List[torch.Tensor],
                    stream_keep: Optional[List[torch.Tensor]] = None) -> nn.Module:
    """A new, smaller WideResNet holding only the kept channels (eval/train mode and device preserved)."""
    arch = dict(model.arch, inner=[len(k) for k in inner_keep])
    if stream_keep is not None:
        arch["widths"] = [len(k) for k in stream_keep]
    ref = next(model.parameters())
    small = type(model)(**arch).to(ref.device, ref.dtype)
    small.stem.weight.copy_(effective_weight(model.stem))
    for dst, src, keep, (in_idx, out_idx) in zip(small.blocks, model.blocks, inner_keep,
                                                 block_streams(model, stream_keep)):
        _copy_bn(dst.bn1, src.bn1, in_idx)
        _copy_conv(dst.conv1, src.conv1, keep, in_idx)
        _copy_bn(dst.bn2, src.bn2, keep)
        _copy_conv(dst.conv2, src.conv2, out_idx, keep)
        if src.shortcut is not None:
            _copy_conv(dst.shortcut, src.shortcut, out_idx, in_idx)
    last = stream_keep[-1] if stream_keep is not None else None
    _copy_bn(small.bn, model.bn, last)
    small.fc.weight.copy_(_take(effective_weight(model.fc), 1, last))
    small.fc.bias.copy_(model.fc.bias)
    if getattr(model, "rotation_head", None) is not None:  # ReMixMatch's head reads the same features
        small.rotation_head.weight.copy_(_take(effective_weight(model.rotation_head), 1, last))
        small.rotation_head.bias.copy_(model.rotation_head.bias)
    return small.train(model.training)


def _removed(n: int, keep: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[keep.cpu()] = False
    return mask


@torch.no_grad()
def mask_channels(model: nn.Module, inner_keep: List[torch.Tensor],
                  stream_keep: Optional[List[torch.Tensor]] = None) -> nn.Module:
    """A full-size copy of ``model`` in which the channels that ``remove_channels`` drops contribute nothing."""
    masked = copy.deepcopy(model)
    for block, keep in zip(masked.blocks, inner_keep):
        gone = _removed(len(block.bn2.weight), keep).to(block.bn2.weight.device)
        block.bn2.weight[gone] = 0
        block.bn2.bias[gone] = 0
    for s, keep in enumerate(stream_keep or []):
        gone = _removed(masked.arch["widths"][s], keep)
        for conv in stream_writers(masked, s):
            conv.weight[gone.to(conv.weight.device)] = 0
        for bn in stream_readers(masked, s):
            bn.weight[gone.to(bn.weight.device)] = 0
            bn.bias[gone.to(bn.bias.device)] = 0
    return masked
