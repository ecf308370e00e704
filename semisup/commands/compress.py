"""``python -m semisup.compress``: prune a checkpoint's EMA model, write DIR/pruned.pt and DIR/report.json.

pruned.pt is an ordinary semisup checkpoint (``model_name``, ``arch``, ``model``, ``ema`` = the same weights,
``config``), so ``train.py --init DIR/pruned.pt`` fine-tunes it and evaluation loads it like any other; unstructured
methods also store their ``masks`` unless ``--remove``.

With a first word, ``python -m semisup.compress WORD`` runs another command instead: one per entry of
``SUBCOMMANDS`` (sensitivity analysis, the compression study, lottery tickets), each in its own module here. The
dispatch and the ``--help`` epilog are both made from that table, so a command cannot be missing from the help.
The pruning itself is ``semisup.compress.prune``; this module only turns flags into its specification and writes
the files.
"""
import argparse
import os
import sys
from typing import Callable, Dict, NamedTuple

import torch

from ..checkpoint import FORMAT, VERSION, atomic_save
from ..compress import report as rep
from ..compress.pruning import METHODS, PruneSpec, read_ratio_file
from ..compress.source import load_source, prune_and_measure, source_data, with_training_loss
from ..config import Config, ConfigError, OneLineParser
from ..records import write_json
from . import DefaultsHelp, checked


class Subcommand(NamedTuple):
    """A command under ``python -m semisup.compress WORD``: its arguments, what it does, and a loader that imports
    its module only when it runs (lottery pulls in the training code, which pruning does not need)."""
    usage: str
    summary: str
    load: Callable


def _sensitivity():
    from .sensitivity import main as run
    return run


def _study():
    from .study import main as run
    return run


def _lottery():
    from .lottery import main as run
    return run


SUBCOMMANDS: Dict[str, Subcommand] = {
    "sensitivity": Subcommand("--checkpoint C --out DIR [--max-drop D]",
                              "prune one layer at a time at increasing ratios, evaluate each without fine-tuning, "
                              "and write the curves and (with --max-drop) DIR/ratios.json for --ratio-file",
                              _sensitivity),
    "study": Subcommand("--checkpoint C [C ...] --out DIR --steps S [-- <train.py flags>]",
                        "the compression study: every method and ratio of the checkpoints, each pruned network "
                        "fine-tuned, run here or as a Slurm array", _study),
    "lottery": Subcommand("--out DIR --rounds R -- <train.py flags>",
                          "lottery tickets with rewinding and their reinit and random controls", _lottery),
}


def subcommands_epilog() -> str:
    """The --help lines of the other commands, one per ``SUBCOMMANDS`` entry."""
    return " ".join(f"python -m semisup.compress {word} {cmd.usage}: {cmd.summary}; its --help lists its flags."
                    for word, cmd in SUBCOMMANDS.items())


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m semisup.compress", formatter_class=DefaultsHelp,
                description="Prune the EMA model of a semisup checkpoint and report params, MACs, sparsity, "
                            "CPU latency and test accuracy before and after. Masks (magnitude, taylor) save no "
                            "time; slim and l1-filter remove channels for real.",
                epilog=subcommands_epilog())
    p.add_argument("--checkpoint", required=True, help="semisup checkpoint (e.g. runs/x/last.pt)")
    p.add_argument("--method", required=True, choices=METHODS,
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


def spec_from_args(args) -> PruneSpec:
    """The specification the flags ask for; one ConfigError for a bad flag or ratio file, before any work."""
    checks = [(args.latency_repeats >= 1, f"--latency-repeats must be at least 1 (got {args.latency_repeats})"),
              (args.threads >= 0, f"--threads must not be negative (got {args.threads})")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if args.ratio_file:
        if args.ratio is not None or args.scope is not None:
            raise ConfigError("--ratio-file gives every layer its own ratio: drop --ratio and --scope")
        if args.prune_residual:
            raise ConfigError("--ratio-file names in-branch channel groups; --prune-residual has no ratio there")
    layer_ratios = read_ratio_file(args.ratio_file, args.method) if args.ratio_file else None
    return PruneSpec(args.method, ratio=0.5 if args.ratio is None else args.ratio, scope=args.scope,
                     layer_ratios=layer_ratios, ratio_file=args.ratio_file, norm=args.norm,
                     prune_residual=args.prune_residual, max_layer_ratio=args.max_layer_ratio,
                     channel_multiple=args.channel_multiple, selection=args.selection, remove_masks=args.remove,
                     taylor_batches=args.taylor_batches, seed=args.seed).checked()


def load_data(args, cfg: Config, needed: bool):
    """The source run's data, or None with a note when only the optional accuracy needed it."""
    try:
        return source_data(cfg, args.data_dir)
    except ConfigError as err:
        if needed:
            raise
        print(f"note: no test accuracy ({err})", file=sys.stderr)
        return None


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
    """Prune --checkpoint by the flags, measure before and after, write DIR/pruned.pt and DIR/report.json."""
    spec = spec_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    source = load_source(args.checkpoint)
    needed = spec.method == "taylor" or args.data_dir is not None
    data = load_data(args, source.cfg, needed) if (args.eval or spec.method == "taylor") else None
    pruned, measured = prune_and_measure(source, with_training_loss(spec, source.cfg, data), data,
                                         args.latency_repeats, args.channels_last, args.eval)
    by_file = {"ratio": None, "scope": None, "ratio_file": spec.ratio_file, "ratios": spec.layer_ratios}
    settings = {"checkpoint": args.checkpoint, "method": spec.method, "ratio": spec.ratio, "scope": spec.scope,
                "norm": spec.norm, "prune_residual": spec.prune_residual, "selection": spec.selection,
                "channel_multiple": spec.channel_multiple,
                "removed_masks": spec.remove_masks,
                "latency_layout": "channels_last" if args.channels_last else "contiguous",
                **(by_file if spec.ratio_file else {})}
    state = source.state
    result = {**settings, **measured}
    os.makedirs(args.out, exist_ok=True)
    out_state = {"format": FORMAT, "version": VERSION, "model_name": state["model_name"],
                 "arch": dict(pruned.model.arch), "model": pruned.weights, "ema": pruned.weights,
                 "config": state.get("config", {}), "step": state.get("step", 0), "compression": settings,
                 **({"masks": pruned.masks} if pruned.masks else {})}
    atomic_save(out_state, os.path.join(args.out, "pruned.pt"))
    if args.onnx:
        export_onnx(pruned.model, os.path.join(args.out, "pruned.onnx"))
    write_json(result, os.path.join(args.out, "report.json"))
    return result


def main(argv=None) -> int:
    """The pruning command; with a first word of ``SUBCOMMANDS``, that command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]].load()(argv[1:])
    args = build_parser().parse_args(argv)
    result = checked(run, args, "python -m semisup.compress")
    if result is None:
        return 2
    print(rep.format_report(result))
    print(f"wrote {os.path.join(args.out, 'pruned.pt')} and report.json")
    return 0
