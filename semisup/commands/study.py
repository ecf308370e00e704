"""``python -m semisup.compress study``: the compression study's flags (``semisup.experiments.study`` plans it)."""
import argparse
import sys
from typing import Sequence

from ..config import ConfigError, OneLineParser
from ..experiments import slurm, study
from ..experiments.sweep import TRAIN_PY, launch_runs


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m semisup.compress study", description=study.__doc__.split("\n\n")[0],
                           epilog="Any further flags (or everything after --) go to every train.py run, e.g. "
                                  "--amp auto --threads 1. Pictures: scripts/tables.py OUT (also written at the end).")
    slurm.add_arguments(parser)
    parser.add_argument("--checkpoint", dest="checkpoints", nargs="+", required=True,
                        help="trained checkpoints, one per seed (each fine-tunes on its own labeled split)")
    parser.add_argument("--out", required=True, help="study folder; runs go to OUT/study/<row>@<labels>/seed<k>")
    parser.add_argument("--methods", nargs="+", choices=study.METHODS, default=list(study.METHODS),
                        help="compression methods (python -m semisup.compress --method, with its defaults)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7],
                        help="shares pruned: of conv/linear weights (magnitude, taylor), of channels (slim, l1-filter)")
    parser.add_argument("--finetune", nargs="+", choices=study.FINETUNES, default=list(study.FINETUNES),
                        help="fine-tunings of every pruned network, each for --steps (MixMatch at the λu "
                             "its checkpoint ended training with, from the first step)")
    parser.add_argument("--steps", type=int, required=True, help="fine-tuning steps of every run")
    parser.add_argument("--eval-every", type=int, help="steps between evaluations (default: --steps // 4)")
    parser.add_argument("--no-dense", dest="dense", action="store_false",
                        help="leave out the unpruned network fine-tuned for the same steps")
    parser.add_argument("--data-dir", help="folder holding the datasets (default: train.py's)")
    parser.add_argument("--print-commands", action="store_true", help="print one train.py command per run")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="local: on this machine; slurm: the unfinished runs as one job array")
    parser.add_argument("--parallel", type=int, default=1, metavar="N", help="local: N runs at once")
    return parser


def main(argv: Sequence[str], train_py: str = TRAIN_PY) -> int:
    args, extra = build_parser().parse_known_args(list(argv))
    extra = [t for t in extra if t != "--"] + (["--data-dir", args.data_dir] if args.data_dir else [])
    try:
        study.check(args)
        runs = study.plan(args.checkpoints, args.out, args.methods, args.ratios, args.finetune, args.steps,
                    args.eval_every or max(1, args.steps // 4), extra, args.dense)
        configs = [run.config() for run in runs]
        if args.print_commands:
            print("\n".join(run.command() for run in runs))
            return 0
        study.check_data(configs)
        args.table = study.TABLE
        return launch_runs(args, runs, configs, extra, train_py)
    except ConfigError as err:
        print(f"python -m semisup.compress study: error: {err}", file=sys.stderr)
        return 2
