"""``train.py --init C --init-prune METHOD --init-ratio R``: prune the --init model at the start of a run.

The pruning is exactly ``python -m semisup.compress --checkpoint C --method METHOD --ratio R`` with that command's
defaults (its EMA model; global scope, except local for l1-filter; a per-layer cap of 0.9; network slimming's
gather on ResNet-164/DenseNet-40), so a compress-then-fine-tune pipeline becomes one train.py run per stage and a
sweep can run, resume and schedule it like any other run. The run folder gets ``init_prune.json``: the sizes and
CPU latency (batch 1 and 256) before and after, and the test accuracy of the pruned model before any fine-tuning
(network slimming's "pruned" column).
Pruning is deterministic, so a resumed run rebuilds the same shape and masks, and keeps the record it wrote.
"""
from typing import Tuple

import torch

from ..config import Config
from ..masks import Masks
from .pruning import PruneSpec, plain_copy, prune
from .source import latency, source_data, source_from_state, test_accuracy
from .taylor import training_loss_fn

RECORD = "init_prune.json"


def init_spec(cfg: Config, source_cfg: Config, data_dir: str) -> PruneSpec:
    """The run's --init-prune and --init-ratio as a specification; taylor scores on the --init run's own split,
    read from this run's --data-dir."""
    taylor_loss = None
    if cfg.init_prune == "taylor":
        data = source_data(source_cfg, data_dir)
        taylor_loss = training_loss_fn(source_cfg, data, torch.device("cpu"), source_cfg.batch_size, cfg.seed)
    return PruneSpec(cfg.init_prune, ratio=cfg.init_ratio, seed=cfg.seed, taylor_loss=taylor_loss).checked()


def pruned_init(cfg: Config, data, state: dict) -> Tuple[torch.nn.Module, Masks, dict]:
    """(the pruned model in training mode, its masks (unstructured methods), the record for init_prune.json),
    from ``state``, the --init checkpoint as the run already read and checked it."""
    source = source_from_state(state, cfg.init)
    spec = init_spec(cfg, source.cfg, cfg.data_dir)
    dense = plain_copy(source.model)[2]
    pruned = prune(source.model, spec)
    record = {"init": cfg.init, "method": spec.method, "ratio": spec.ratio, "scope": spec.scope,
              "arch": {"before": dict(state["arch"]), "after": dict(pruned.model.arch)},
              **pruned.sizes, "latency_ms": latency(dense, pruned.model),
              "latency_layout": "channels_last",
              "test_acc": {"before": test_accuracy(dense, data), "after": test_accuracy(pruned.model, data)}}
    return pruned.model.train(), pruned.masks, record

