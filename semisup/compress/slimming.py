"""Network slimming (Liu et al., 2017) and L1-norm filter ranking (Li et al., 2017) on the pre-activation WRN.

Training adds s·sign(γ) to the batch-norm γ gradients (``add_slim_penalty_``), which drives unneeded channels'
γ towards zero. Then channels are ranked and chosen:

- in-branch channels (conv1 output → bn2 → conv2 input of each block): removing one changes nothing outside
  its block, so these are always the prunable set. ``slim`` ranks them by |γ| of bn2, ``l1-filter`` by the norm
  of conv1's filter.
- residual-stream channels (optional): one set per stage, shared by every block that adds into the stream. They
  are ranked by the mean |γ| of the batch norms that read the stream (``slim``) or by the norm of all filters
  that write it (``l1-filter``).

``select_channels`` picks the channels to remove with one global threshold (or the same fraction per layer),
never taking more than ``max_layer_ratio`` of a layer and always leaving at least one channel.
"""
import math
from typing import List, Optional

import torch
import torch.nn as nn

from ..masks import effective_weight
from ..models import batch_norms

METHODS = ("slim", "l1-filter")


def add_slim_penalty_(model: nn.Module, s: float) -> None:
    """γ.grad += s·sign(γ) for every batch norm: the subgradient of s·Σ|γ|, as in the paper (all BN layers)."""
    with torch.no_grad():
        for m in batch_norms(model):
            if m.weight is not None and m.weight.grad is not None:
                m.weight.grad.add_(torch.sign(m.weight), alpha=s)


def slim_hook(s: float):
    """An ``after_backward`` hook: runs once per optimizer step, after unscaling and all micro-batches."""
    def hook(trainer, step: int) -> None:
        add_slim_penalty_(trainer.model, s)
    return hook


def stages(model: nn.Module) -> List[List[nn.Module]]:
    """The WRN's blocks grouped by stage (each stage starts with the block that projects the shortcut)."""
    n_stages = len(model.arch["widths"])
    repeat = len(model.blocks) // n_stages
    return [list(model.blocks)[s * repeat:(s + 1) * repeat] for s in range(n_stages)]


def stream_readers(model: nn.Module, s: int) -> List[nn.BatchNorm2d]:
    """Batch norms that read stage ``s``'s residual stream: bn1 of its later blocks, then the next stage's first
    block (or the final bn)."""
    groups = stages(model)
    following = groups[s + 1][0].bn1 if s + 1 < len(groups) else model.bn
    return [b.bn1 for b in groups[s][1:]] + [following]


def stream_writers(model: nn.Module, s: int) -> List[nn.Conv2d]:
    """Convs whose outputs are added into stage ``s``'s stream: every conv2 and the first block's shortcut."""
    blocks = stages(model)[s]
    return [b.conv2 for b in blocks] + [blocks[0].shortcut]


def filter_norms(convs: List[nn.Conv2d], p: int) -> torch.Tensor:
    """Per output channel, the L-p norm of that channel's filters across ``convs``."""
    rows = torch.cat([effective_weight(c).flatten(1) for c in convs], dim=1)
    return rows.norm(p=p, dim=1)


def branch_scores(model: nn.Module, method: str, p: int = 1) -> List[torch.Tensor]:
    """One score per in-branch channel of every block: |γ| of bn2, or the L-p norm of conv1's filter."""
    if method == "slim":
        return [b.bn2.weight.detach().abs() for b in model.blocks]
    return [filter_norms([b.conv1], p) for b in model.blocks]


def stream_scores(model: nn.Module, method: str, p: int = 1) -> List[torch.Tensor]:
    """One score per residual-stream channel of every stage."""
    if method == "slim":
        return [torch.stack([bn.weight.detach().abs() for bn in stream_readers(model, s)]).mean(0)
                for s in range(len(stages(model)))]
    return [filter_norms(stream_writers(model, s), p) for s in range(len(stages(model)))]


def layer_cap(n: int, max_layer_ratio: float) -> int:
    """How many of a layer's n channels may go: at most floor(max_layer_ratio · n), and never all of them."""
    return min(n - 1, math.floor(max_layer_ratio * n))


def round_keep(kept: int, n: int, min_keep: int, multiple: int) -> int:
    """``kept`` rounded to the nearest multiple (half up), not below ``min_keep`` and not above n."""
    if multiple <= 1:
        return kept
    rounded = multiple * math.floor(kept / multiple + 0.5)
    if rounded < min_keep:
        rounded = multiple * math.ceil(min_keep / multiple)
    return max(1, min(rounded, n))


def select_channels(scores: List[torch.Tensor], ratio: float, scope: str = "global",
                    max_layer_ratio: float = 0.9, multiple: int = 1) -> List[torch.Tensor]:
    """Sorted indices of the channels to keep in each layer after removing round(ratio · channels).

    global: the lowest scores over all layers go first, skipping a layer once it reaches its cap (a global
    threshold on the score, capped per layer). local: round(ratio · n) of each layer. Raises ValueError when the
    caps do not allow the requested count. ``multiple`` > 1 then rounds each layer's kept count to a multiple
    (CPU and GPU kernels run faster on such widths) and keeps that many of the highest-scoring channels.
    """
    sizes = [len(s) for s in scores]
    caps = [layer_cap(n, max_layer_ratio) for n in sizes]
    if scope == "local":
        removed = [int(round(ratio * n)) for n in sizes]
        if any(r > c for r, c in zip(removed, caps)):
            raise ValueError(f"ratio {ratio} removes more than the per-layer cap ({max_layer_ratio}, and at least "
                             f"one channel kept) allows")
        drop = [s.argsort(stable=True)[:r] for s, r in zip(scores, removed)]
    else:
        drop = _global_drop(scores, int(round(ratio * sum(sizes))), caps, max_layer_ratio)
    keep = []
    for s, n, c, d in zip(scores, sizes, caps, drop):
        count = round_keep(n - len(d), n, n - c, multiple)
        if count != n - len(d):
            d = s.detach().cpu().argsort(stable=True)[:n - count]
        mask = torch.ones(n, dtype=torch.bool)
        mask[d] = False
        keep.append(mask.nonzero().squeeze(1))
    return keep


def _global_drop(scores: List[torch.Tensor], count: int, caps: List[int], max_layer_ratio: float):
    if count > sum(caps):
        raise ValueError(f"cannot remove {count} channels: the per-layer cap ({max_layer_ratio}, and at least one "
                         f"channel kept) allows {sum(caps)}")
    flat = torch.cat([s.detach().float().cpu() for s in scores])
    layer = torch.cat([torch.full((len(s),), i) for i, s in enumerate(scores)])
    index = torch.cat([torch.arange(len(s)) for s in scores])
    taken = [0] * len(scores)
    drop: List[List[int]] = [[] for _ in scores]
    for j in flat.argsort(stable=True).tolist():
        if count == 0:
            break
        i = int(layer[j])
        if taken[i] < caps[i]:
            drop[i].append(int(index[j]))
            taken[i] += 1
            count -= 1
    return [torch.tensor(d, dtype=torch.long) for d in drop]


def plan(model: nn.Module, method: str, ratio: float, scope: str = "global", p: int = 1,
         max_layer_ratio: float = 0.9, residual: bool = False, multiple: int = 1):
    """(in-branch keep indices per block, residual-stream keep indices per stage or None)."""
    if method not in METHODS:
        raise ValueError(f"structured method must be one of {', '.join(METHODS)}, got {method!r}")
    inner = select_channels(branch_scores(model, method, p), ratio, scope, max_layer_ratio, multiple)
    stream: Optional[List[torch.Tensor]] = None
    if residual:
        stream = select_channels(stream_scores(model, method, p), ratio, scope, max_layer_ratio, multiple)
    return inner, stream
