"""Sensitivity analysis (Han et al., 2015; Li et al., 2017) and the per-layer ratio file it derives.

One layer at a time is pruned at increasing ratios and the model evaluated without fine-tuning, then restored: the
curves show which layers tolerate pruning (most) and which do not (often the first conv, the first and last blocks
of a stage), so that each layer can get its own ratio instead of one global number.

What a layer is depends on the method; its name is always the module's name in the network:

- ``magnitude``: each conv/linear layer (``blocks.0.conv1``, ``fc``), its round(r·n) smallest |w| zeroed.
- ``slim``, ``l1-filter``: each prunable channel group, named by the batch norm its channels pass through. On the
  WRN that is a block's in-branch channels (``blocks.0.bn2``): the channels with the smallest bn2 |γ| (slim) or
  conv1 filter L1 norm (l1-filter) get their bn2 γ and β zeroed, which computes exactly what removing them computes
  (the surgery's tested equivalence). On VGG-19, ResNet-164 and DenseNet-40 it is every batch norm (slim only),
  masked as ``netslim.mask_channels`` masks it. A ratio the pruning command's per-layer cap (``--max-layer-ratio``)
  refuses is not evaluated, so a ratio file derived from the curves is one that command accepts.

A ratio file is ``{"method": "<method>", "ratios": {"<layer name>": r, ...}}`` with 0 <= r < 1; layers it does not
name are not pruned. ``python -m semisup.compress --ratio-file`` and ``train.py --prune-ratio-file`` read it; the
method says which kind of layer the names are (conv/linear layers or channel groups), and a reader of the other
kind refuses it.
"""
import copy
import json
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..config import ConfigError
from ..masks import Masks, prunable_modules
from . import netslim
from .slimming import branch_scores, select_channels
from .unstructured import Scores, masks_from_scores

METHODS = ("magnitude", "slim", "l1-filter")
# What a ratio file's method says its names are: the methods of one kind read each other's files.
WEIGHT_METHODS, CHANNEL_METHODS = ("magnitude", "taylor"), ("slim", "l1-filter")
KIND_OF = {**{m: "conv/linear layers" for m in WEIGHT_METHODS}, **{m: "channel groups" for m in CHANNEL_METHODS}}
DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DROP_TOLERANCE = 1e-4  # accuracy points: below any real difference (1 image in 1,000,000), above float32's rounding
Curves = Dict[str, Dict[str, list]]  # layer → {"ratios": [r, ...], "accuracy": [acc or None, ...]}
Pruner = Callable[[nn.Module, str, float], Optional[nn.Module]]


def weight_layers(model: nn.Module) -> List[str]:
    """The conv/linear layers magnitude pruning ranks, by module name, in forward order."""
    return [name for name, _ in prunable_modules(model)]


def channel_groups(model: nn.Module, method: str, p: int = 1) -> Dict[str, torch.Tensor]:
    """Each prunable channel group (named by its batch norm) with one score per channel, in forward order."""
    if netslim.is_slimming_network(model):
        if method != "slim":
            raise ConfigError(f"{type(model).__name__}: its channels are ranked by batch-norm |gamma| (--method "
                              f"slim); --method l1-filter is for the WRN")
        names = {id(m): name for name, m in model.named_modules()}
        return {names[id(bn)]: s for (bn, _), s in zip(netslim.units(model), netslim.scores(model))}
    return {f"blocks.{i}.bn2": s for i, s in enumerate(branch_scores(model, method, p))}


def layer_names(model: nn.Module, method: str) -> List[str]:
    """The layers a ratio file for ``method`` may name on this model."""
    return weight_layers(model) if method in ("magnitude", "taylor") else list(channel_groups(model, method))


def prune_weights(model: nn.Module, name: str, ratio: float) -> nn.Module:
    """A copy of ``model`` with the round(ratio·n) smallest |w| of layer ``name`` zeroed (masks_from_scores's count)."""
    pruned = copy.deepcopy(model)
    weight = pruned.get_submodule(name).weight
    with torch.no_grad():
        weight.mul_(masks_from_scores({name: weight.abs()}, ratio, "local")[name])
    return pruned


def selections(model: nn.Module) -> Dict[str, nn.Module]:
    """Each channel group's selection (network slimming's ``ChannelSelect`` after its batch norm, which a network
    slimmed before carries), by the batch norm's name; none on the WRN."""
    if not netslim.is_slimming_network(model):
        return {}
    names = {id(m): name for name, m in model.named_modules()}
    return {names[id(bn)]: select for bn, select in netslim.units(model)}


def channel_pruner(model: nn.Module, method: str, max_layer_ratio: float) -> Pruner:
    """prune(model, group, ratio): a copy with that group's round(ratio·n) lowest-scoring channels masked, or None
    where the pruning command's per-layer cap refuses the ratio (never fewer than one channel is left). Scores
    are taken once, from the unpruned model."""
    groups, selects = channel_groups(model, method), selections(model)

    def prune(model: nn.Module, name: str, ratio: float) -> Optional[nn.Module]:
        try:
            keep = select_channels([groups[name]], ratio, "local", max_layer_ratio)[0]
        except ValueError:
            return None
        masked = copy.deepcopy(model)
        netslim.zero_dropped_(masked.get_submodule(name), keep, selects.get(name))
        return masked
    return prune


def pruner(model: nn.Module, method: str, max_layer_ratio: float = 0.9) -> Tuple[Dict[str, int], Pruner]:
    """({layer: its size in weights or channels} for the layers ``method`` prunes, the function that prunes one of
    them alone)."""
    if method == "magnitude":
        return {name: m.weight.numel() for name, m in prunable_modules(model)}, prune_weights
    sizes = {name: len(s) for name, s in channel_groups(model, method).items()}
    return sizes, channel_pruner(model, method, max_layer_ratio)


def layer_curves(model: nn.Module, layers: Sequence[str], ratios: Sequence[float],
                 evaluate_fn: Callable[[nn.Module], float], prune_fn: Pruner = prune_weights,
                 progress: Callable[[str, list], None] = lambda name, accs: None) -> Curves:
    """Per layer, ``evaluate_fn`` of the model with that layer alone pruned at each ratio (None where ``prune_fn``
    declines). Every evaluation starts from the unpruned ``model``, which is never changed."""
    curves = {}
    for name in layers:
        accs = []
        for r in ratios:
            pruned = prune_fn(model, name, r)
            accs.append(None if pruned is None else evaluate_fn(pruned))
        curves[name] = {"ratios": list(ratios), "accuracy": accs}
        progress(name, accs)
    return curves


def analyse(model: nn.Module, method: str, ratios: Sequence[float], evaluate_fn: Callable[[nn.Module], float],
            max_drop: Optional[float] = None, progress: Callable[[str, list], None] = lambda name, accs: None,
            max_layer_ratio: float = 0.9) -> dict:
    """The base accuracy, every layer's size and curve and, with ``max_drop``, each layer's chosen ratio."""
    sizes, prune_fn = pruner(model, method, max_layer_ratio)
    base = evaluate_fn(model)
    curves = layer_curves(model, list(sizes), ratios, evaluate_fn, prune_fn, progress)
    result = {"method": method, "base_acc": base, "ratios": list(ratios),
              "layers": {name: {"size": sizes[name], **curve} for name, curve in curves.items()}}
    if max_drop is not None:
        result["max_drop"] = max_drop
        result["chosen"] = ratios_within(curves, base, max_drop)
    return result


def valid_subset(images: torch.Tensor, labels: torch.Tensor, n: Optional[int],
                 seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The run's validation images (training images it held out: the network never trained on them), all of them
    or ``n`` chosen by ``seed`` (numpy's MT19937: the same images on any machine), in their order. Choosing the
    ratios on them leaves the test set out of the choice."""
    if n is None:
        return images, labels
    if n > len(labels):
        raise ConfigError(f"--subset {n} is more than the run's {len(labels)} validation images (--n-valid)")
    idx = torch.from_numpy(np.sort(np.random.RandomState(seed).permutation(len(labels))[:n]))
    return images[idx], labels[idx]


def ratio_within(ratios: Sequence[float], accs: Sequence[Optional[float]], base_acc: float,
                 max_drop: float) -> float:
    """The largest ratio up to which every drop (base − accuracy) stays within ``max_drop``: the last ratio before the
    curve first leaves it, so a lucky point beyond a fall is never chosen; 0 if the first ratio already leaves it.
    Accuracies are float32 percentages (1 of 100 images: 1.000002 points), hence ``DROP_TOLERANCE``."""
    chosen = 0.0
    for r, acc in sorted(zip(ratios, accs), key=lambda pair: pair[0]):
        if acc is None or base_acc - acc > max_drop + DROP_TOLERANCE:
            break
        chosen = r
    return chosen


def ratios_within(curves: Curves, base_acc: float, max_drop: float) -> Dict[str, float]:
    """Each layer's ``ratio_within``: what the ratio file holds."""
    return {name: ratio_within(c["ratios"], c["accuracy"], base_acc, max_drop) for name, c in curves.items()}


def check_ratios(ratios: Sequence[float]) -> List[float]:
    """The --ratios to evaluate, sorted and without repeats; refuses an empty list or a ratio outside [0, 1)."""
    if not ratios:
        raise ConfigError("--ratios needs at least one ratio in [0, 1)")
    bad = [r for r in ratios if not 0 <= r < 1]
    if bad:
        raise ConfigError(f"--ratios must lie in [0, 1) (got {bad[0]})")
    return sorted(set(ratios))


def read_ratio_file(path: str, methods: Sequence[str], reader: str) -> Dict[str, float]:
    """The {layer: ratio} of a ratio file, each ratio in [0, 1), for ``reader``, which prunes what ``methods``
    prune; ConfigError (one line) for anything else, a file of the other kind of layer included."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as err:
        raise ConfigError(f"ratio file {path}: cannot read it ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"ratio file {path}: not JSON ({err})") from None
    ratios = doc.get("ratios") if isinstance(doc, dict) else None
    if not isinstance(ratios, dict) or not ratios:
        raise ConfigError(f"ratio file {path}: expected {{\"method\": ..., \"ratios\": {{\"<layer name>\": ratio, "
                          f"...}}}} with at least one layer")
    for name, r in ratios.items():
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r < 1:
            raise ConfigError(f"ratio file {path}: layer {name} has ratio {r!r}; ratios must lie in [0, 1)")
    check_method(doc.get("method"), path, methods, reader)
    return {name: float(r) for name, r in ratios.items()}


def check_method(method, path: str, methods: Sequence[str], reader: str) -> None:
    """Refuse a file whose method names the other kind of layer than ``reader`` prunes (or no known kind): the
    names would be refused one by one, or worse, match by chance."""
    if not isinstance(method, str) or method not in KIND_OF:
        raise ConfigError(f"ratio file {path}: method {method!r} is none of {', '.join(KIND_OF)}")
    if method not in methods:
        raise ConfigError(f"ratio file {path} is a {method} file, of {KIND_OF[method]}; {reader} prunes "
                          f"{KIND_OF[methods[0]]} ({' or '.join(methods)} files)")


def check_layers(ratios: Dict[str, float], known: Sequence[str], path: str, what: str) -> None:
    """Refuse a ratio file that names layers the network does not have (a typo, another network or method)."""
    unknown = [name for name in ratios if name not in known]
    if unknown:
        shown = ", ".join(known[:3]) + (f", ... ({len(known)} in all)" if len(known) > 3 else "")
        raise ConfigError(f"ratio file {path} names {len(unknown)} layer(s) this network does not have: "
                          f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''} (its {what}: {shown})")


def masks_from_ratios(scores: Scores, ratios: Dict[str, float]) -> Masks:
    """Masks that zero, in each layer on its own, the round(r·n) lowest scores for its ratio r (0 for a layer the
    ratios do not name). ``scores`` are keyed by weight (``<layer>.weight``), as ``magnitude_scores`` gives them."""
    return {key: masks_from_scores({key: s}, ratios.get(key[:-len(".weight")], 0.0), "local")[key]
            for key, s in scores.items()}


def channel_keeps(groups: Dict[str, torch.Tensor], ratios: Dict[str, float], max_layer_ratio: float,
                  multiple: int) -> List[torch.Tensor]:
    """Per channel group (``channel_groups``'s order), the channels kept after removing its own ratio's share,
    under the pruning command's per-layer cap and rounding; ValueError naming the group past its cap."""
    keeps = []
    for name, scores in groups.items():
        try:
            keeps.append(select_channels([scores], ratios.get(name, 0.0), "local", max_layer_ratio, multiple)[0])
        except ValueError as err:
            raise ValueError(f"layer {name}: {err}") from None
    return keeps


def ratio_file(method: str, ratios: Dict[str, float]) -> dict:
    """ratios.json: the method says what kind of layer the names are (conv/linear layers or channel groups)."""
    return {"method": method, "ratios": ratios}


def format_table(result: dict) -> str:
    """sensitivity.txt: one row per layer, one column per ratio, the accuracy drop in points ('-': not evaluated)."""
    ratios, base = result["ratios"], result["base_acc"]
    width = max([len("layer")] + [len(name) for name in result["layers"]])
    lines = [f"{result['method']} sensitivity of {result['checkpoint']}: accuracy drop (points) from the base "
             f"{base:.2f}% on {result['images']} {result['evaluated_on']} images, one layer pruned at a time, "
             f"no fine-tuning",
             f"{'layer':<{width}}  {'size':>8}" + "".join(f"{r:>8g}" for r in ratios)
             + ("  chosen" if "chosen" in result else "")]
    for name, layer in result["layers"].items():
        drops = "".join("       -" if a is None else f"{base - a:8.2f}" for a in layer["accuracy"])
        chosen = f"  {result['chosen'][name]:6g}" if "chosen" in result else ""
        lines.append(f"{name:<{width}}  {layer['size']:>8}{drops}{chosen}")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
    """sensitivity.png: accuracy against ratio, one curve per layer (coloured by depth) starting from the unpruned
    accuracy at ratio 0, and with --max-drop the lowest accuracy the chosen ratios allow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = result["layers"]
    fig, ax = plt.subplots(figsize=(8, 5))
    cmap = plt.get_cmap("viridis")
    for i, (name, layer) in enumerate(layers.items()):
        points = [(0.0, result["base_acc"])] * (0.0 not in layer["ratios"])
        points += [(r, a) for r, a in zip(layer["ratios"], layer["accuracy"]) if a is not None]
        ax.plot([r for r, _ in points], [a for _, a in points], "o-", ms=3, lw=1,
                color=cmap(i / max(len(layers) - 1, 1)), label=name)
    ax.axhline(result["base_acc"], color="gray", ls="--", lw=1, label="unpruned")
    if "max_drop" in result:
        ax.axhline(result["base_acc"] - result["max_drop"], color="red", ls=":", lw=1,
                   label=f"{result['max_drop']:g} points below (--max-drop)")
    ax.set_xlabel("ratio pruned (this layer alone)")
    ax.set_ylabel(f"accuracy (%) on {result['evaluated_on']} images")
    ax.set_title(f"{result['method']} sensitivity, no fine-tuning")
    ax.grid(alpha=0.3)
    if len(layers) <= 40:
        ax.legend(fontsize=6, ncol=1 + len(layers) // 20, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:  # too many to name: the colour bar gives each curve's depth, sensitivity.txt its numbers
        depth = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, len(layers) - 1))
        fig.colorbar(depth, ax=ax, label="layer (forward order)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
