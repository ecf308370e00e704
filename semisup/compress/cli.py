"""``python -m semisup.compress``: prune a checkpoint's EMA model, write DIR/pruned.pt and DIR/report.json.

pruned.pt is an ordinary semisup checkpoint (``model_name``, ``arch``, ``model``, ``ema`` = the same weights,
``config``), so ``train.py --init DIR/pruned.pt`` fine-tunes it and evaluation loads it like any other; unstructured
methods also store their ``masks`` unless ``--remove``.
"""
import argparse
import os
import sys

import torch

from ..checkpoint import FORMAT, VERSION, CheckpointError, atomic_save, load_checkpoint, model_from_checkpoint
from ..config import Config, ConfigError, OneLineParser
from ..data import prepare_from_config
from ..masks import clear_masks, set_masks, split_masks
from ..models import model_from_arch
from ..predict import accuracy, predict
from ..records import write_json
from . import netslim
from . import report as rep
from .slimming import plan
from .surgery import remove_channels
from .taylor import training_loss_fn
from .unstructured import magnitude_scores, masks_from_scores, taylor_scores

UNSTRUCTURED = ("magnitude", "taylor")
STRUCTURED = ("slim", "l1-filter")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one worth showing."""

    def _get_help_string(self, action):
        if action.required or action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m semisup.compress", formatter_class=_Help,
                description="Prune the EMA model of a semisup checkpoint and report params, MACs, sparsity, "
                            "CPU latency and test accuracy before and after. Masks (magnitude, taylor) save no "
                            "time; slim and l1-filter remove channels for real.")
    p.add_argument("--checkpoint", required=True, help="semisup checkpoint (e.g. runs/x/last.pt)")
    p.add_argument("--method", required=True, choices=UNSTRUCTURED + STRUCTURED,
                   help="magnitude: |w|; taylor: |w * mean gradient| of the training loss (masks); slim: bn2 |gamma|; "
                        "l1-filter: norm of conv1's filters (channels removed)")
    p.add_argument("--ratio", type=float, default=0.5,
                   help="fraction of conv/linear weights (magnitude, taylor) or of prunable channels (slim, l1-filter)")
    p.add_argument("--scope", choices=("global", "local"), default=None,
                   help="one threshold over all layers, or the same fraction per layer (default: local for "
                        "l1-filter, whose norms are not comparable across layers; global otherwise)")
    p.add_argument("--norm", type=int, choices=(1, 2), default=1,
                   help="norm of l1-filter's ranking (single weights rank the same under L1 and L2)")
    p.add_argument("--prune-residual", action="store_true",
                   help="slim/l1-filter: also remove residual-stream channels, consistently across each stage")
    p.add_argument("--max-layer-ratio", type=float, default=0.9,
                   help="slim/l1-filter: most any one layer may lose (at least one channel always stays)")
    p.add_argument("--channel-multiple", type=int, default=1,
                   help="slim/l1-filter: round each layer's kept channels to a multiple of this (8 runs faster)")
    p.add_argument("--selection", choices=("gather", "fold"), default="gather",
                   help="slim on ResNet-164/DenseNet-40: pass the kept channels of a batch norm that reads the stream "
                        "to the next conv by a gather (fewer MACs), or fold the choice into that conv's weights (no "
                        "gather, the dropped channels' MACs back); benchmarks/bench_slim_networks.py measures both")
    p.add_argument("--remove", action="store_true",
                   help="magnitude/taylor: fold the masks into the weights and store none (fine-tuning may regrow)")
    p.add_argument("--taylor-batches", type=int, default=4, help="batches whose mean gradient taylor uses")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: the checkpoint's configuration)")
    p.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True,
                   help="test accuracy before and after (skipped with a note when the data is not there)")
    p.add_argument("--latency-repeats", type=int, default=3, help="timed forward passes per batch size (median)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="time the models in channels-last layout (semisup's CPU default) instead of contiguous")
    p.add_argument("--onnx", action="store_true", help="also export DIR/pruned.onnx (needs the onnx extra)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    p.add_argument("--seed", type=int, default=0, help="seed of taylor's batches")
    p.add_argument("--out", required=True, help="output folder")
    return p


def check_args(args) -> None:
    checks = [(0 <= args.ratio < 1, f"--ratio must be in [0, 1) (got {args.ratio})"),
              (0 < args.max_layer_ratio <= 1, f"--max-layer-ratio must be in (0, 1] (got {args.max_layer_ratio})"),
              (args.channel_multiple >= 1, f"--channel-multiple must be at least 1 (got {args.channel_multiple})"),
              (args.taylor_batches >= 1, f"--taylor-batches must be at least 1 (got {args.taylor_batches})"),
              (args.latency_repeats >= 1, f"--latency-repeats must be at least 1 (got {args.latency_repeats})"),
              (args.threads >= 0, f"--threads must not be negative (got {args.threads})"),
              (not args.prune_residual or args.method in STRUCTURED,
               "--prune-residual needs --method slim or l1-filter"),
              (not args.remove or args.method in UNSTRUCTURED, "--remove applies to --method magnitude or taylor")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    args.scope = args.scope or ("local" if args.method == "l1-filter" else "global")


def load_source(path: str):
    """(checkpoint dict, its configuration, the plain EMA model on the CPU with any masks applied)."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(str(err)) from None
    cfg = Config.from_dict(state["config"]) if "config" in state else Config()
    weights = "ema" if isinstance(state.get("ema"), dict) else "raw"
    try:
        return state, cfg, model_from_checkpoint(state, weights, path, keep_masks=True)
    except CheckpointError as err:
        raise ConfigError(str(err)) from None


def load_data(args, cfg: Config, needed: bool):
    try:
        return prepare_from_config(cfg, download=False, data_dir=args.data_dir)
    except ConfigError as err:
        if needed:
            raise
        print(f"note: no test accuracy ({err})", file=sys.stderr)
        return None


def prune(model: torch.nn.Module, args, cfg: Config, data):
    """The pruned model (masked in place for unstructured methods, a new smaller one for structured)."""
    if args.method in STRUCTURED and netslim.is_slimming_network(model):
        clear_masks(model)
        if args.method != "slim" or args.prune_residual:
            raise ConfigError(f"{type(model).__name__}: network slimming's surgery (--method slim) keeps the "
                              f"residual stream and the dense concatenation whole; --method l1-filter and "
                              f"--prune-residual are for the WRN")
        try:
            small = netslim.remove_channels(model, netslim.plan(model, args.ratio, args.scope, args.max_layer_ratio,
                                                                args.channel_multiple))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return netslim.fold_selections(small) if args.selection == "fold" else small
    if args.method in STRUCTURED:
        clear_masks(model)
        try:
            inner, stream = plan(model, args.method, args.ratio, args.scope, args.norm, args.max_layer_ratio,
                                 args.prune_residual, args.channel_multiple)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return remove_channels(model, inner, stream)
    if args.method == "taylor":
        torch.manual_seed(args.seed)
        loss_fn = training_loss_fn(cfg, data, torch.device("cpu"), cfg.batch_size, args.seed)
        scores = taylor_scores(model, loss_fn, args.taylor_batches)
    else:
        scores = magnitude_scores(model)
    set_masks(model, masks_from_scores(scores, args.ratio, args.scope))
    if args.remove:
        clear_masks(model)
    return model


def plain_copy(name: str, model: torch.nn.Module):
    """(plain state dict, masks, a mask-free model holding the same effective weights)."""
    state, masks = split_masks(model)
    plain = model_from_arch(name, model.arch)
    plain.load_state_dict(state)
    return state, masks, plain.eval()


def test_accuracy(model, data):
    return accuracy(predict(model, data.test.images), data.test.labels) if data is not None else None


def export_onnx(model: torch.nn.Module, path: str) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs it; fail with a clear message first)
    except ImportError:
        raise ConfigError("--onnx needs the onnx package: pip install 'semisup[onnx]'") from None
    model = model.eval().to(memory_format=torch.contiguous_format)
    torch.onnx.export(model, (torch.zeros(2, 3, 32, 32),), path, input_names=["images"],
                      output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                      external_data=False, verbose=False)


def run(args) -> dict:
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    state, cfg, model = load_source(args.checkpoint)
    needed = args.method == "taylor" or args.data_dir is not None
    data = load_data(args, cfg, needed) if (args.eval or args.method == "taylor") else None
    _, _, dense = plain_copy(state["model_name"], model)
    acc_before = test_accuracy(dense, data) if args.eval else None
    pruned = prune(model, args, cfg, data)
    weights, masks, final = plain_copy(state["model_name"], pruned)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    measured = rep.compare(dense, final, repeats=args.latency_repeats, memory_format=layout)
    settings = {"checkpoint": args.checkpoint, "method": args.method, "ratio": args.ratio, "scope": args.scope,
                "norm": args.norm, "prune_residual": args.prune_residual, "selection": args.selection,
                "channel_multiple": args.channel_multiple,
                "removed_masks": args.remove, "latency_layout": "channels_last" if args.channels_last else "contiguous"}
    result = {**settings, "arch": {"before": dict(state["arch"]), "after": dict(final.arch)}, **measured,
              "test_acc": {"before": acc_before, "after": test_accuracy(final, data) if args.eval else None}}
    os.makedirs(args.out, exist_ok=True)
    out_state = {"format": FORMAT, "version": VERSION, "model_name": state["model_name"], "arch": dict(final.arch),
                 "model": weights, "ema": weights, "config": state.get("config", {}), "step": state.get("step", 0),
                 "compression": settings, **({"masks": masks} if masks else {})}
    atomic_save(out_state, os.path.join(args.out, "pruned.pt"))
    if args.onnx:
        export_onnx(final, os.path.join(args.out, "pruned.onnx"))
    write_json(result, os.path.join(args.out, "report.json"))
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except ConfigError as err:
        print(f"python -m semisup.compress: error: {err}", file=sys.stderr)
        return 2
    print(rep.format_report(result))
    print(f"wrote {os.path.join(args.out, 'pruned.pt')} and report.json")
    return 0
