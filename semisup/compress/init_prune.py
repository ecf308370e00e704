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
from . import report as rep

RECORD = "init_prune.json"


def compress_args(cfg: Config):
    """The compress command's own parsed arguments for this run's --init-prune and --init-ratio."""
    from .cli import build_parser, check_args

    args = build_parser().parse_args(["--checkpoint", cfg.init, "--method", cfg.init_prune, "--ratio",
                                      repr(cfg.init_ratio), "--out", cfg.run_dir, "--seed", str(cfg.seed),
                                      "--data-dir", cfg.data_dir])
    check_args(args)
    return args


def pruned_init(cfg: Config, data, state: dict) -> Tuple[torch.nn.Module, Masks, dict]:
    """(the pruned model in training mode, its masks (unstructured methods), the record for init_prune.json),
    from ``state``, the --init checkpoint as the run already read and checked it."""
    from .cli import plain_copy, prune, source_from_state, test_accuracy

    args = compress_args(cfg)
    state, source_cfg, model = source_from_state(state, cfg.init)
    _, _, dense = plain_copy(state["model_name"], model)
    taylor_data = load_taylor_data(args, source_cfg) if args.method == "taylor" else None
    pruned = prune(model, args, source_cfg, taylor_data)
    _, masks, final = plain_copy(state["model_name"], pruned)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    record = {"init": cfg.init, "method": args.method, "ratio": args.ratio, "scope": args.scope,
              "arch": {"before": dict(state["arch"]), "after": dict(final.arch)},
              **rep.compare(dense, pruned, repeats=args.latency_repeats, memory_format=layout),
              "latency_layout": "channels_last" if args.channels_last else "contiguous",
              "test_acc": {"before": test_accuracy(dense, data), "after": test_accuracy(pruned, data)}}
    return final.train(), masks, record


def load_taylor_data(args, source_cfg: Config):
    """The data the Taylor criterion scores with: the --init run's own split, from this run's --data-dir."""
    from .cli import load_data

    return load_data(args, source_cfg, needed=True)

