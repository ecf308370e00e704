"""``python -m semisup.compress sensitivity``: prune one layer at a time at each ratio, evaluate without
fine-tuning, write the curves and (``--max-drop``) the ratio file that ``--ratio-file`` reads."""
import argparse
import os

import torch

from ..compress import sensitivity as sens
from ..compress.pruning import plain_copy
from ..compress.source import load_source, source_data
from ..config import ConfigError, OneLineParser
from ..predict import accuracy, predict
from ..records import replace_whole, write_json, write_text
from . import DefaultsHelp, checked

PROG = "python -m semisup.compress sensitivity"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, formatter_class=DefaultsHelp,
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


def run(args) -> dict:
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
    source = load_source(args.checkpoint)
    if args.on == "valid" and source.cfg.n_valid == 0:
        raise ConfigError(f"--on valid: the run of {args.checkpoint} held out no validation images (--n-valid 0); "
                          f"use --on test")
    dense = plain_copy(source.model)[2]
    data = source_data(source.cfg, args.data_dir)
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




def main(argv) -> int:
    args = build_parser().parse_args(argv)
    result = checked(run, args, PROG)
    if result is None:
        return 2
    print(sens.format_table(result), end="")
    print(f"wrote {os.path.join(args.out, 'sensitivity.json')}, .txt, .png"
          + (" and ratios.json" if args.max_drop is not None else ""))
    return 0
