"""What a compression starts from and is measured with: the source checkpoint, its data, test accuracy, latency."""
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from ..config import Config, ConfigError
from ..data import SSLData, prepare_from_config
from ..predict import accuracy, predict
from . import report as rep
from .pruning import Pruned, PruneSpec, plain_copy, prune
from .taylor import training_loss_fn


@dataclass
class Source:
    """A checkpoint to compress: the dict as read, its run's configuration, and its EMA model (raw weights when
    it has none) on the CPU in eval mode, with any masks it was saved with re-attached."""
    state: dict
    cfg: Config
    model: nn.Module


def load_source(path: str) -> Source:
    """The checkpoint at ``path``; one ConfigError when it cannot be read or rebuilt."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(str(err)) from None
    return source_from_state(state, path)


def source_from_state(state: dict, path: str) -> Source:
    """``load_source`` for a checkpoint already read from ``path``."""
    cfg = Config.from_dict(state["config"]) if "config" in state else Config()
    weights = "ema" if isinstance(state.get("ema"), dict) else "raw"
    try:
        return Source(state, cfg, model_from_checkpoint(state, weights, path, keep_masks=True))
    except CheckpointError as err:
        raise ConfigError(str(err)) from None


def source_data(cfg: Config, data_dir: Optional[str] = None) -> SSLData:
    """The source run's own split (its dataset, labels, seed), read from ``data_dir`` (default: the run's), never
    downloaded; one ConfigError when it is not there."""
    return prepare_from_config(cfg, download=False, data_dir=data_dir)


def test_accuracy(model: nn.Module, data: Optional[SSLData]) -> Optional[float]:
    """Top-1 test accuracy in percent, or None without data."""
    return accuracy(predict(model, data.test.images), data.test.labels) if data is not None else None


def latency(before: nn.Module, after: nn.Module, repeats: int = 3, channels_last: bool = True,
            batches: Sequence[int] = rep.LATENCY_BATCHES) -> dict:
    """CPU latency (ms, median of ``repeats``) of both models at each batch size, timed in turn; in channels-last
    layout, semisup's CPU default, unless told otherwise."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return {f"batch_{b}": rep.latencies_ms({"before": before, "after": after}, b, repeats, memory_format=layout)
            for b in batches}


def with_training_loss(spec: PruneSpec, cfg: Config, data: Optional[SSLData]) -> PruneSpec:
    """The spec with, for taylor, the source run's own training loss on ``data`` (its split) as the scores' loss."""
    if spec.method != "taylor":
        return spec
    return replace(spec, taylor_loss=training_loss_fn(cfg, data, torch.device("cpu"), cfg.batch_size, spec.seed))


def prune_and_measure(source: Source, spec: PruneSpec, data: Optional[SSLData], repeats: int = 3,
                      channels_last: bool = True, evaluate: bool = True) -> Tuple[Pruned, dict]:
    """(the pruned network, its record: arch, sizes and CPU latency before and after, and the test accuracy before
    and after pruning, None without ``evaluate`` or data): what the pruning command reports and what
    ``train.py --init-prune`` writes to init_prune.json."""
    dense = plain_copy(source.model)[2]
    acc_before = test_accuracy(dense, data) if evaluate else None
    pruned = prune(source.model, spec)
    record = {"arch": {"before": dict(source.state["arch"]), "after": dict(pruned.model.arch)}, **pruned.sizes,
              "latency_ms": latency(dense, pruned.model, repeats, channels_last),
              "test_acc": {"before": acc_before, "after": test_accuracy(pruned.model, data) if evaluate else None}}
    return pruned, record
