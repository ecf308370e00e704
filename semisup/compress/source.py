"""What a compression starts from and is measured with: the source checkpoint, its data, test accuracy, latency."""
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from ..config import Config, ConfigError
from ..data import SSLData, prepare_from_config
from ..predict import accuracy, predict
from . import report as rep


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
