"""``python -m semisup.compress study``: every compression method at several ratios on trained checkpoints, each
result fine-tuned twice for the same steps (MixMatch on labeled and unlabeled images; supervised on the labeled
ones), then accuracy against MACs, latency and parameters.

Every cell is an ordinary train.py run (``--init C --init-prune METHOD --init-ratio R --algorithm A``) in
OUT/study/<method>-<ratio %>-<fine-tuning>@<labels>/seed<k>, so the sweep's launchers run it on this machine
(``--parallel``) or as a SLURM job array, a rerun skips what finished and resumes the rest, and
``sweep.py status OUT`` reports on it. One checkpoint per seed: each fine-tunes on the labeled split its checkpoint
was trained on (its own --seed), so the spread over seeds is over independently trained networks. The ``dense``
rows fine-tune the unpruned network for the same steps: what the extra training alone buys.
"""
import argparse
import os
import sys
from typing import Dict, List, Sequence, Tuple

from ..checkpoint import CheckpointError, load_checkpoint
from ..config import Config, ConfigError, OneLineParser
from ..data import prepare_from_config
from ..losses import lambda_u_at
from . import slurm
from .sweep import Run, launch_runs

TABLE = "study"
METHODS = ("magnitude", "taylor", "slim", "l1-filter")
FINETUNES = ("mixmatch", "supervised")


def source_flags(path: str) -> Tuple[List[str], Dict[str, List[str]]]:
    """(the data, network and labeled split of a checkpoint as train.py flags; the flags of each fine-tuning)."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(f"--checkpoint: {err}") from None
    cfg = Config.from_dict(state["config"]) if isinstance(state.get("config"), dict) else None
    if cfg is None:
        raise ConfigError(f"--checkpoint {path} holds no training configuration (its data and labeled split)")
    flags = ["--dataset", cfg.dataset, "--model", state["model_name"], "--n-labeled", str(cfg.n_labeled),
             "--n-valid", str(cfg.n_valid), "--seed", str(cfg.seed)]
    return flags, {"mixmatch": ["--algorithm", "mixmatch", *mixmatch_weight(cfg, int(state.get("step", cfg.steps)))],
                   "supervised": ["--algorithm", "supervised"]}


def mixmatch_weight(cfg: Config, step: int) -> List[str]:
    """MixMatch fine-tuning goes on with the λu its network ended training with, at once (no ramp: the guesses
    are as good as they will get). A full-length run ends at λu = 75 after its ramp; a short run that stopped
    mid-ramp ends lower, and jumping it to 75 can collapse a pruned network to chance. Sources trained
    otherwise take MixMatch's λu without a ramp."""
    if cfg.algorithm != "mixmatch":
        return ["--rampup-kimg", "0"]
    weight = lambda_u_at(step * cfg.batch_size, cfg.lambda_u, cfg.rampup_images)
    return ["--lambda-u", repr(weight), "--rampup-kimg", "0"]


def row_name(method: str, ratio: float, finetune: str) -> str:
    return f"{method}-{round(100 * ratio)}-{finetune}"


def plan(checkpoints: Sequence[str], out: str, methods: Sequence[str], ratios: Sequence[float],
         finetunes: Sequence[str], steps: int, eval_every: int, extra: Sequence[str] = (),
         dense: bool = True) -> List[Run]:
    """The study's runs, checkpoint by checkpoint (a seed's whole grid before the next)."""
    runs = []
    for path in checkpoints:
        flags, finetune_flags = source_flags(path)
        seed, labels = int(flags[flags.index("--seed") + 1]), int(flags[flags.index("--n-labeled") + 1])
        cells = [(None, 0.0)] * dense + [(m, r) for m in methods for r in ratios]
        for method, ratio in cells:
            prune = ("--init-prune", method, "--init-ratio", repr(ratio)) if method else ()
            for finetune in finetunes:
                row = row_name(method, ratio, finetune) if method else f"dense-{finetune}"
                folder = os.path.join(out, TABLE, f"{row}@{labels}", f"seed{seed}")
                argv = (*flags, *finetune_flags[finetune], "--init", path, *prune, "--steps", str(steps),
                        "--eval-every", str(eval_every), "--out", folder, *extra)
                runs.append(Run(TABLE, row, labels, seed, folder, argv))
    return runs


def check(args) -> None:
    checks = [(args.steps >= 1, f"--steps must be at least 1 (got {args.steps})"),
              (all(0 < r < 1 for r in args.ratios), f"--ratios must be in (0, 1) (got {args.ratios})"),
              (len(set(args.checkpoints)) == len(args.checkpoints), "--checkpoint names a checkpoint twice")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def check_data(configs: Sequence[Config]) -> None:
    """Fine-tuning needs the checkpoints' data: refuse now, not in every run."""
    seen = set()
    for cfg in configs:
        key = (cfg.dataset, cfg.data_dir)
        if key not in seen:
            seen.add(key)
            prepare_from_config(cfg, download=False)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m semisup.compress study", description=__doc__.split("\n\n")[0],
                           epilog="Any further flags (or everything after --) go to every train.py run, e.g. "
                                  "--amp auto --threads 1. Pictures: scripts/tables.py OUT (also written at the end).")
    slurm.add_arguments(parser)
    parser.add_argument("--checkpoint", dest="checkpoints", nargs="+", required=True,
                        help="trained checkpoints, one per seed (each fine-tunes on its own labeled split)")
    parser.add_argument("--out", required=True, help="study folder; runs go to OUT/study/<row>@<labels>/seed<k>")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="compression methods (python -m semisup.compress --method, with its defaults)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7],
                        help="shares pruned: of conv/linear weights (magnitude, taylor), of channels (slim, l1-filter)")
    parser.add_argument("--finetune", nargs="+", choices=FINETUNES, default=list(FINETUNES),
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


def main(argv: Sequence[str], train_py: str) -> int:
    args, extra = build_parser().parse_known_args(list(argv))
    extra = [t for t in extra if t != "--"] + (["--data-dir", args.data_dir] if args.data_dir else [])
    try:
        check(args)
        runs = plan(args.checkpoints, args.out, args.methods, args.ratios, args.finetune, args.steps,
                    args.eval_every or max(1, args.steps // 4), extra, args.dense)
        configs = [run.config() for run in runs]
        if args.print_commands:
            print("\n".join(run.command() for run in runs))
            return 0
        check_data(configs)
        args.table = TABLE
        return launch_runs(args, runs, configs, extra, train_py)
    except ConfigError as err:
        print(f"python -m semisup.compress study: error: {err}", file=sys.stderr)
        return 2
