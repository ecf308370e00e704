"""Pruning as a function: ``prune(model, PruneSpec(...))`` → the pruned model, its masks and its size record.

    from semisup.compress import PruneSpec, load_source, prune
    source = load_source("runs/cifar10@250/last.pt")              # the checkpoint's EMA model
    pruned = prune(source.model, PruneSpec("l1-filter", ratio=0.3))
    pruned.model, pruned.masks, pruned.sizes["macs"]              # a smaller WRN; {}; MACs before and after

The specification is typed and checked here, whoever builds it: ``python -m semisup.compress`` from its flags,
``train.py --init-prune`` from the run's configuration, a notebook by hand. Nothing here reads argv.
"""
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

from ..config import ConfigError
from ..masks import Masks, clear_masks, clone, set_masks, split_masks
from . import netslim
from . import report as rep
from . import sensitivity as sens
from .slimming import plan
from .surgery import remove_channels
from .unstructured import magnitude_scores, masks_from_scores, taylor_scores

UNSTRUCTURED = ("magnitude", "taylor")
STRUCTURED = ("slim", "l1-filter")
METHODS = UNSTRUCTURED + STRUCTURED
SELECTIONS = ("gather", "fold")


@dataclass(frozen=True)
class PruneSpec:
    """What to prune and how; each default is the pruning command's.

    ``layer_ratios`` (a ratio file's ``{layer: ratio}``, ``read_ratio_file``) gives every named layer or channel
    group its own ratio instead of ``ratio`` and ``scope``. ``taylor_loss(model, i)`` is the loss of the i-th batch
    whose mean gradient the taylor criterion uses (``compress.taylor.training_loss_fn`` builds the run's own).
    """
    method: str
    ratio: float = 0.5
    scope: Optional[str] = None  # None: local for l1-filter (norms not comparable across layers), global otherwise
    layer_ratios: Optional[Dict[str, float]] = None
    ratio_file: Optional[str] = None  # where layer_ratios came from, for messages
    norm: int = 1  # l1-filter's ranking norm
    prune_residual: bool = False  # slim/l1-filter on the WRN: the residual stream too
    max_layer_ratio: float = 0.9  # structured: the most one layer may lose
    channel_multiple: int = 1  # structured: kept channels rounded to a multiple of this
    selection: str = "gather"  # slim on ResNet-164/DenseNet-40: gather the kept channels, or fold into the conv
    remove_masks: bool = False  # unstructured: fold the masks into the weights, keep none
    taylor_batches: int = 4
    seed: int = 0  # of taylor's batches
    taylor_loss: Optional[Callable] = field(default=None, compare=False, repr=False)

    def checked(self) -> "PruneSpec":
        """This specification with its scope resolved; one ConfigError for the first thing wrong with it."""
        checks = [(self.method in METHODS, f"--method must be one of {', '.join(METHODS)} (got {self.method})"),
                  (0 <= self.ratio < 1, f"--ratio must be in [0, 1) (got {self.ratio})"),
                  (self.scope in (None, "global", "local"), f"--scope must be global or local (got {self.scope})"),
                  (self.norm in (1, 2), f"--norm must be 1 or 2 (got {self.norm})"),
                  (self.selection in SELECTIONS, f"--selection must be gather or fold (got {self.selection})"),
                  (0 < self.max_layer_ratio <= 1,
                   f"--max-layer-ratio must be in (0, 1] (got {self.max_layer_ratio})"),
                  (self.channel_multiple >= 1,
                   f"--channel-multiple must be at least 1 (got {self.channel_multiple})"),
                  (self.taylor_batches >= 1, f"--taylor-batches must be at least 1 (got {self.taylor_batches})"),
                  (not self.prune_residual or self.method in STRUCTURED,
                   "--prune-residual needs --method slim or l1-filter"),
                  (not self.remove_masks or self.method in UNSTRUCTURED,
                   "--remove applies to --method magnitude or taylor")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return replace(self, scope=self.scope or ("local" if self.method == "l1-filter" else "global"))


def read_ratio_file(path: str, method: str) -> Dict[str, float]:
    """The ``{layer: ratio}`` of a ratio file (``python -m semisup.compress sensitivity --max-drop`` writes one)
    for ``method``; one ConfigError for an unreadable file or one of the other kind of layer."""
    kind = UNSTRUCTURED if method in UNSTRUCTURED else STRUCTURED
    return sens.read_ratio_file(path, kind, f"--method {method}")


@dataclass
class Pruned:
    """What ``prune`` returns: the pruned network as a plain (mask-free) model in eval mode holding the effective
    weights, the masks to keep while fine-tuning (unstructured methods; else empty), the plain state dict a
    checkpoint stores, and the sizes before and after (``report.sizes``: params, nonzero params, MACs, sparsity)."""
    model: nn.Module
    masks: Masks
    weights: dict
    sizes: dict


def prune(model: nn.Module, spec: PruneSpec) -> Pruned:
    """Prune a copy of ``model`` by ``spec`` (``model`` itself is left as it was): masks for magnitude and taylor,
    a new smaller network for slim and l1-filter."""
    spec = spec.checked()
    work = clone(model)
    before = rep.sizes(work)
    pruned = _pruned(work, spec)
    weights, masks, plain = plain_copy(pruned)
    return Pruned(plain, masks, weights, rep.before_after(before, rep.sizes(plain)))


def _pruned(model: nn.Module, spec: PruneSpec) -> nn.Module:
    """The pruned model at ``spec.ratio`` under its scope or, with layer ratios, each named layer (conv/linear, or
    channel group) on its own to its own ratio under the same criterion, cap and rounding."""
    if spec.layer_ratios is not None:
        what = "conv/linear layers" if spec.method in UNSTRUCTURED else "channel groups (batch norms)"
        sens.check_layers(spec.layer_ratios, sens.layer_names(model, spec.method), spec.ratio_file, what)
    if spec.method in STRUCTURED:
        clear_masks(model)
        if not netslim.is_slimming_network(model):
            return remove_channels(model, *kept_channels(model, spec))
        if spec.method != "slim" or spec.prune_residual:
            raise ConfigError(f"{type(model).__name__}: network slimming's surgery (--method slim) keeps the "
                              f"residual stream and the dense concatenation whole; --method l1-filter and "
                              f"--prune-residual are for the WRN")
        small = netslim.remove_channels(model, kept_channels(model, spec)[0])
        return netslim.fold_selections(small) if spec.selection == "fold" else small
    if spec.method == "taylor":
        if spec.taylor_loss is None:
            raise ConfigError("--method taylor needs the training loss of the checkpoint's run (PruneSpec.taylor_loss)")
        torch.manual_seed(spec.seed)
        scores = taylor_scores(model, spec.taylor_loss, spec.taylor_batches)
    else:
        scores = magnitude_scores(model)
    set_masks(model, sens.masks_from_ratios(scores, spec.layer_ratios) if spec.layer_ratios is not None
              else masks_from_scores(scores, spec.ratio, spec.scope))
    if spec.remove_masks:
        clear_masks(model)
    return model


def kept_channels(model: nn.Module, spec: PruneSpec):
    """(per channel group the channels kept, the residual stream's per stage or None): the plan for the ratio under
    the scope, or each group's own share from the layer ratios; the groups are the WRN's in-branch channels or
    network slimming's batch norms. A ratio past the per-layer cap is one ConfigError."""
    try:
        if spec.layer_ratios is not None:
            groups = sens.channel_groups(model, spec.method, spec.norm)
            return sens.channel_keeps(groups, spec.layer_ratios, spec.max_layer_ratio, spec.channel_multiple), None
        if netslim.is_slimming_network(model):
            return netslim.plan(model, spec.ratio, spec.scope, spec.max_layer_ratio, spec.channel_multiple), None
        return plan(model, spec.method, spec.ratio, spec.scope, spec.norm, spec.max_layer_ratio,
                    spec.prune_residual, spec.channel_multiple)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"ratio file {spec.ratio_file}: {err}" if spec.layer_ratios is not None
                          else str(err)) from None


def plain_copy(model: nn.Module):
    """(plain state dict, masks, a mask-free copy in eval mode holding the same effective weights)."""
    state, masks = split_masks(model)
    plain = clone(model)
    clear_masks(plain)
    return state, masks, plain.eval()
