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
import os
from typing import Dict, List, Sequence, Tuple

from ..checkpoint import CheckpointError, load_checkpoint
from ..config import Config, ConfigError
from ..data import prepare_from_config
from ..losses import lambda_u_at
from .sweep import Run

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
