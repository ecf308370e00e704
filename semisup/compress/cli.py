"""``python -m semisup.compress``: prune a checkpoint's EMA model, write DIR/pruned.pt and DIR/report.json.

pruned.pt is an ordinary semisup checkpoint (``model_name``, ``arch``, ``model``, ``ema`` = the same weights,
``config``), so ``train.py --init DIR/pruned.pt`` fine-tunes it and evaluation loads it like any other; unstructured
methods also store their ``masks`` unless ``--remove``.

``python -m semisup.compress sensitivity`` prunes one layer at a time instead, evaluates, and with ``--max-drop``
writes the ratio file that ``--ratio-file`` reads (``sensitivity.py``); ``python -m semisup.compress lottery`` trains
lottery tickets with rewinding and their two controls (``lottery_cli.py``).
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
from ..records import replace_whole, write_json, write_text
from . import netslim
from . import report as rep
from . import sensitivity as sens
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
                            "time; slim and l1-filter remove channels for real.",
                epilog="python -m semisup.compress sensitivity --checkpoint C --out DIR [--max-drop D]: prune one "
                       "layer at a time at increasing ratios, evaluate each without fine-tuning, and write the "
                       "curves and (with --max-drop) DIR/ratios.json for --ratio-file; its --help lists its flags. "
                       "python -m semisup.compress lottery --out DIR --rounds R -- <train.py flags>: lottery "
                       "tickets with rewinding and their reinit and random controls; its --help lists its flags.")
    p.add_argument("--checkpoint", required=True, help="semisup checkpoint (e.g. runs/x/last.pt)")
    p.add_argument("--method", required=True, choices=UNSTRUCTURED + STRUCTURED,
                   help="magnitude: |w|; taylor: |w * mean gradient| of the training loss (masks); slim: bn2 |gamma|; "
                        "l1-filter: norm of conv1's filters (channels removed)")
    p.add_argument("--ratio", type=float, default=None,
                   help="fraction of conv/linear weights (magnitude, taylor) or of prunable channels (slim, l1-filter) "
                        "(default: 0.5)")
    p.add_argument("--ratio-file", default=None,
                   help="each layer's own ratio from this file, {\"method\": ..., \"ratios\": {\"<layer>\": r}} "
                        "(python -m semisup.compress sensitivity --max-drop writes one), instead of --ratio and "
                        "--scope; layers it does not name keep everything")
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
    args.layer_ratios = check_ratio_file_args(args) if args.ratio_file else None
    args.ratio = 0.5 if args.ratio is None else args.ratio
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


def check_ratio_file_args(args) -> dict:
    """--ratio-file replaces --ratio and --scope, and names in-branch channel groups only; read it now, before any
    work, so that a bad file is refused with nothing written."""
    if args.ratio is not None or args.scope is not None:
        raise ConfigError("--ratio-file gives every layer its own ratio: drop --ratio and --scope")
    if args.prune_residual:
        raise ConfigError("--ratio-file names in-branch channel groups; --prune-residual has no ratio there")
    kind = UNSTRUCTURED if args.method in UNSTRUCTURED else STRUCTURED
    return sens.read_ratio_file(args.ratio_file, kind, f"--method {args.method}")


def load_source(path: str):
    """(checkpoint dict, its configuration, the plain EMA model on the CPU with any masks applied)."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(str(err)) from None
    return source_from_state(state, path)


def source_from_state(state: dict, path: str):
    """load_source for a checkpoint already read from ``path``."""
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
    """The pruned model (masked in place for unstructured methods, a new smaller one for structured), at --ratio
    under --scope or, with --ratio-file, each named layer (conv/linear, or channel group) on its own to its own
    ratio under the same criterion, cap and rounding; only which weights or channels go differs."""
    if args.ratio_file:
        what = "conv/linear layers" if args.method in UNSTRUCTURED else "channel groups (batch norms)"
        sens.check_layers(args.layer_ratios, sens.layer_names(model, args.method), args.ratio_file, what)
    if args.method in STRUCTURED:
        clear_masks(model)
        if not netslim.is_slimming_network(model):
            return remove_channels(model, *kept_channels(model, args))
        if args.method != "slim" or args.prune_residual:
            raise ConfigError(f"{type(model).__name__}: network slimming's surgery (--method slim) keeps the "
                              f"residual stream and the dense concatenation whole; --method l1-filter and "
                              f"--prune-residual are for the WRN")
        small = netslim.remove_channels(model, kept_channels(model, args)[0])
        return netslim.fold_selections(small) if args.selection == "fold" else small
    if args.method == "taylor":
        torch.manual_seed(args.seed)
        loss_fn = training_loss_fn(cfg, data, torch.device("cpu"), cfg.batch_size, args.seed)
        scores = taylor_scores(model, loss_fn, args.taylor_batches)
    else:
        scores = magnitude_scores(model)
    set_masks(model, sens.masks_from_ratios(scores, args.layer_ratios) if args.ratio_file
              else masks_from_scores(scores, args.ratio, args.scope))
    if args.remove:
        clear_masks(model)
    return model


def kept_channels(model: torch.nn.Module, args):
    """(per channel group the channels kept, the residual stream's per stage or None): the plan for --ratio under
    --scope, or each group's own share from the ratio file; the groups are the WRN's in-branch channels or
    network slimming's batch norms. A ratio past the per-layer cap is one ConfigError."""
    try:
        if args.ratio_file:
            groups = sens.channel_groups(model, args.method, args.norm)
            return sens.channel_keeps(groups, args.layer_ratios, args.max_layer_ratio, args.channel_multiple), None
        if netslim.is_slimming_network(model):
            return netslim.plan(model, args.ratio, args.scope, args.max_layer_ratio, args.channel_multiple), None
        return plan(model, args.method, args.ratio, args.scope, args.norm, args.max_layer_ratio, args.prune_residual,
                    args.channel_multiple)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"ratio file {args.ratio_file}: {err}" if args.ratio_file else str(err)) from None


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
    by_file = {"ratio": None, "scope": None, "ratio_file": args.ratio_file, "ratios": args.layer_ratios}
    settings = {"checkpoint": args.checkpoint, "method": args.method, "ratio": args.ratio, "scope": args.scope,
                "norm": args.norm, "prune_residual": args.prune_residual, "selection": args.selection,
                "channel_multiple": args.channel_multiple,
                "removed_masks": args.remove, "latency_layout": "channels_last" if args.channels_last else "contiguous",
                **(by_file if args.ratio_file else {})}
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


def build_sensitivity_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m semisup.compress sensitivity", formatter_class=_Help,
                      description="Sensitivity analysis (Han et al. 2015; Li et al. 2017): prune each layer alone at "
                                  "each ratio, evaluate the EMA model without fine-tuning, restore, next. Writes "
                                  "DIR/sensitivity.json, .txt and .png and, with --max-drop, DIR/ratios.json for "
                                  "--ratio-file and train.py --prune-ratio-file.")
    p.add_argument("--checkpoint", required=True, help="semisup checkpoint (e.g. runs/x/last.pt)")
    p.add_argument("--method", choices=sens.METHODS, default="magnitude",
                   help="magnitude: each conv/linear layer's smallest |w|; slim: each channel group's smallest "
                        "batch-norm |gamma|; l1-filter (WRN): its conv1 filters of smallest L1 norm")
    p.add_argument("--ratios", type=float, nargs="*", default=list(sens.DEFAULT_RATIOS),
                   help="fractions of each layer's weights or channels to prune, each in [0, 1)")
    p.add_argument("--on", choices=("test", "valid"), default="test",
                   help="evaluate on the test set, or on the run's validation images (the training images it held "
                        "out, --n-valid): then the test set plays no part in choosing the ratios")
    p.add_argument("--subset", type=int, default=None,
                   help="--on valid: this many of the validation images, chosen by --seed (default: all of them)")
    p.add_argument("--seed", type=int, default=0, help="--on valid --subset: which validation images")
    p.add_argument("--max-layer-ratio", type=float, default=0.9,
                   help="slim/l1-filter: the pruning command's cap on what one group may lose; ratios past it are "
                        "not evaluated, so --max-drop's file is one the pruning command accepts with this cap")
    p.add_argument("--max-drop", type=float, default=None,
                   help="write DIR/ratios.json: per layer the largest ratio up to which the accuracy drop stays "
                        "within this many points (0 if the first ratio already drops more)")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: the checkpoint's configuration)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    p.add_argument("--out", required=True, help="output folder")
    return p


def run_sensitivity(args) -> dict:
    """Check everything, evaluate every layer at every ratio, then write the files (none when refused)."""
    args.ratios = sens.check_ratios(args.ratios)
    checks = [(args.max_drop is None or args.max_drop >= 0, f"--max-drop must not be negative (got {args.max_drop})"),
              (args.subset is None or args.subset >= 1, f"--subset must be at least 1 (got {args.subset})"),
              (args.subset is None or args.on == "valid", "--subset picks validation images: it needs --on valid"),
              (0 < args.max_layer_ratio <= 1, f"--max-layer-ratio must be in (0, 1] (got {args.max_layer_ratio})"),
              (args.threads >= 0, f"--threads must not be negative (got {args.threads})")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if args.threads:
        torch.set_num_threads(args.threads)
    state, cfg, model = load_source(args.checkpoint)
    if args.on == "valid" and cfg.n_valid == 0:
        raise ConfigError(f"--on valid: the run of {args.checkpoint} held out no validation images (--n-valid 0); "
                          f"use --on test")
    _, _, dense = plain_copy(state["model_name"], model)
    data = load_data(args, cfg, needed=True)
    images, labels = ((data.test.images, data.test.labels) if args.on == "test"
                      else sens.valid_subset(data.valid.images, data.valid.labels, args.subset, args.seed))
    result = sens.analyse(dense, args.method, args.ratios, lambda m: accuracy(predict(m, images), labels),
                          args.max_drop, _print_curve, args.max_layer_ratio)
    result = {"checkpoint": args.checkpoint, "evaluated_on": args.on, "images": len(labels),
              **({"seed": args.seed} if args.subset is not None else {}),
              **({"max_layer_ratio": args.max_layer_ratio} if args.method != "magnitude" else {}), **result}
    os.makedirs(args.out, exist_ok=True)
    write_json(result, os.path.join(args.out, "sensitivity.json"))
    write_text(sens.format_table(result), os.path.join(args.out, "sensitivity.txt"))
    replace_whole(lambda tmp: sens.plot(result, tmp), os.path.join(args.out, "sensitivity.png"))
    if args.max_drop is not None:
        write_json(sens.ratio_file(args.method, result["chosen"]), os.path.join(args.out, "ratios.json"))
    return result


def _print_curve(name: str, accs: list) -> None:
    """One line per layer as it is done: the analysis evaluates layers × ratios models and takes a while."""
    print(name, " ".join("-" if a is None else f"{a:.2f}" for a in accs), flush=True)


def _checked(command, args, prog: str):
    """``command(args)``, or None after printing its ConfigError as the one line ``prog: error: …``."""
    try:
        return command(args)
    except ConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return None


def sensitivity_main(argv) -> int:
    args = build_sensitivity_parser().parse_args(argv)
    result = _checked(run_sensitivity, args, "python -m semisup.compress sensitivity")
    if result is None:
        return 2
    print(sens.format_table(result), end="")
    print(f"wrote {os.path.join(args.out, 'sensitivity.json')}, .txt, .png"
          + (" and ratios.json" if args.max_drop is not None else ""))
    return 0


def main(argv=None) -> int:
    """The pruning command; with a first word, its other commands: ``sensitivity`` (the sensitivity analysis),
    ``study`` (the compression study), ``lottery`` (lottery tickets)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sensitivity"]:
        return sensitivity_main(argv[1:])
    if argv[:1] == ["study"]:
        from ..paper.study import main as study_main
        from ..paper.sweep import TRAIN_PY
        return study_main(argv[1:], TRAIN_PY)
    if argv[:1] == ["lottery"]:
        from .lottery_cli import main as lottery_main  # imports the training code, which pruning does not need
        return lottery_main(argv[1:])
    args = build_parser().parse_args(argv)
    result = _checked(run, args, "python -m semisup.compress")
    if result is None:
        return 2
    print(rep.format_report(result))
    print(f"wrote {os.path.join(args.out, 'pruned.pt')} and report.json")
    return 0
