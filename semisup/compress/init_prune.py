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
from .pruning import PruneSpec
from .source import prune_and_measure, source_data, source_from_state, with_training_loss

RECORD = "init_prune.json"


def init_spec(cfg: Config, source_cfg: Config, data_dir: str) -> PruneSpec:
    """The run's --init-prune and --init-ratio as a specification; taylor scores on the --init run's own split,
    read from this run's --data-dir."""
    spec = PruneSpec(cfg.init_prune, ratio=cfg.init_ratio, seed=cfg.seed).checked()
    return with_training_loss(spec, source_cfg, source_data(source_cfg, data_dir) if spec.method == "taylor" else None)


def pruned_init(cfg: Config, data, state: dict) -> Tuple[torch.nn.Module, Masks, dict]:
    """(the pruned model in training mode, its masks (unstructured methods), the record for init_prune.json),
    from ``state``, the --init checkpoint as the run already read and checked it."""
    source = source_from_state(state, cfg.init)
    spec = init_spec(cfg, source.cfg, cfg.data_dir)
    pruned, measured = prune_and_measure(source, spec, data)
    test_acc = measured.pop("test_acc")
    record = {"init": cfg.init, "method": spec.method, "ratio": spec.ratio, "scope": spec.scope, **measured,
              "latency_layout": "channels_last", "test_acc": test_acc}
    return pruned.model.train(), pruned.masks, record

