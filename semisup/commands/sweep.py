"""``scripts/sweep.py``: the flags of the paper's tables as sweeps of train.py runs, and ``sweep.py status``."""
import argparse
import shlex
import sys
from typing import Sequence

from ..config import ConfigError, OneLineParser
from ..experiments import slurm, status
from ..experiments.settings import ABLATION_FLAGS, PROTOCOL_FLAGS, TABLES
from ..experiments.sweep import TRAIN_PY, estimate_hours, launch_runs, plan


def _rows_help() -> str:
    lines = []
    for name, table in TABLES.items():
        labels = "/".join(map(str, table.labels))
        for i, (row, flags) in enumerate(table.rows.items()):
            lines.append(f"  {name if not i else '':<11} {row:<16} {shlex.join(flags) or '(train.py defaults)'}"
                         + (f"   labels {labels}" if not i else ""))
    return "\n".join(lines)


def build_cli() -> argparse.ArgumentParser:
    rows = _rows_help()
    parser = OneLineParser(prog="sweep.py", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Run the paper's tables as sweeps of train.py runs, one after another, into "
                                 "OUT/<table>/<row>@<labels>/seed<k>. Rerunning the same command skips finished "
                                 "runs and resumes an interrupted one. Any further flags (or everything after --) "
                                 "go to every train.py run.",
                     epilog=f"tables and rows (train.py flags):\n{rows}\n\n"
                            f"table4 runs add {shlex.join(ABLATION_FLAGS)} to every row, as the official ablation "
                            f"did (lambda_u = 100, ramp-up over 128 kimg);\nlabels and supervised use the "
                            f"train.py defaults (lambda_u = 75, ramp-up over 1024 kimg).\n\n"
                            f"every run follows the official protocol of the paper's tables unless its flag is passed "
                            f"through: {' '.join(f'{k} {v}' for k, v in PROTOCOL_FLAGS)} (no held-out validation "
                            f"set, so the unlabeled set is every non-labeled training image; fp32, the official "
                            f"precision).\n\n"
                            f"sweep.py status OUT: one line per run (finished, running, queued, failed, stopped, "
                            f"not started), with its step, job and last log line.")
    slurm.add_arguments(parser)
    parser.add_argument("table", choices=list(TABLES), help="which table to run")
    parser.add_argument("--out", required=True, help="sweep folder; runs go to OUT/<table>/<row>@<labels>/seed<k>")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="seeds (labeled splits); default 3 for table4 (one run per cell on the official "
                             "ablation's split 3, as the paper), "
                             "1 2 3 4 5 for labels and supervised")
    parser.add_argument("--rows", nargs="+", help="only these rows of the table")
    parser.add_argument("--labels", type=int, nargs="+", help="label counts (default: the table's)")
    parser.add_argument("--steps", type=int, help="steps per run (default: train.py's, the paper's 1,048,576)")
    parser.add_argument("--eval-every", type=int, help="steps between evaluations (default: train.py's, 1,024)")
    parser.add_argument("--data-dir", help="folder holding the datasets (default: train.py's)")
    parser.add_argument("--print-commands", action="store_true",
                        help="print one train.py command per run (e.g. for a cluster) instead of running them")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="local: run on this machine; slurm: submit the runs that are neither finished nor "
                             "queued as one job array (submitit), each requeued on a time limit or preemption")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="local: N runs at once, each on its own GPU, or on a CPU-only machine on its own "
                             "share of the cores (with --threads cores/N unless given); output in RUN/train.log")
    parser.add_argument("--estimate", type=float, metavar="SEC_PER_STEP",
                        help="print the device-hours of the runs, given the seconds one K=2 MixMatch training "
                             "step takes on your device (runs with another K, the supervised runs and the "
                             "evaluations are scaled by the images they process), and exit")
    return parser


def status_main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="sweep.py status", description="One line per run of a sweep folder: its state "
                           "(finished, running, queued, failed, stopped, unknown, not started), step, job and last "
                           "log line; then a count per state. Reads squeue, never sacct.")
    parser.add_argument("out", help="the sweep folder (sweep.py's --out)")
    return status.report(parser.parse_args(list(argv)).out)


def main(argv=None, train_py: str = TRAIN_PY) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["status"]:
        return status_main(argv[1:])
    args, extra = build_cli().parse_known_args(argv)
    extra = [t for t in extra if t != "--"]
    try:
        runs = plan(args.table, args.out, args.seeds, args.rows, args.labels, args.steps, args.eval_every,
                    args.data_dir, extra)
        configs = [run.config() for run in runs]
    except ConfigError as err:
        print(f"sweep.py: error: {err}", file=sys.stderr)
        return 2
    if args.print_commands:
        print("\n".join(run.command() for run in runs))
        return 0
    if args.estimate is not None:
        print(f"{len(runs)} run{'s' * (len(runs) != 1)}, {sum(c.steps for c in configs):,} steps: "
              f"{estimate_hours(configs, args.estimate):,.1f} device-hours at {args.estimate:g} s per K=2 MixMatch "
              f"step (scaled per run by its relative work)")
        return 0
    try:
        return launch_runs(args, runs, configs, extra, train_py)
    except ConfigError as err:
        print(f"sweep.py: error: {err}", file=sys.stderr)
        return 2
