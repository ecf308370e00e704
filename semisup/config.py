"""Every hyperparameter in one dataclass, with the paper's defaults, and a strict command line.

The defaults are those of the official MixMatch code for CIFAR-10 (see README, "Faithfulness"). The command line
is generated from the dataclass so that flags, ``--help`` and the saved ``config.json`` can never disagree. Bad
values are refused before any work starts, with one line and exit code 2.
"""
import argparse
import dataclasses
import sys
from dataclasses import dataclass, field, fields
from typing import Optional

from . import algorithm_specs as algorithms
from . import datasets
from .errors import ConfigError, first_line  # noqa: F401  (re-exported: every layer imports them from here)

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "step", "cosine", "cosine-7/16")
WD_MODES = ("decoupled", "l2", "l2-kernels")
# The recipe settings an algorithm may declare in its DEFAULTS (FixMatch's SGD, Nesterov, cosine, coupled L2); unset
# (None) until the algorithm's value, or else this one, is filled in.
RECIPE = {"optimizer": "adam", "lr": 0.002, "lr_schedule": "constant", "nesterov": False, "wd": 0.02,
          "wd_mode": "decoupled"}
AMP_MODES = ("auto", "bf16", "fp16", "none")
DEVICES = ("auto", "cpu", "cuda")
TRAIN_DESCRIPTION = ("Train MixMatch (or the supervised baseline) on CIFAR-10, CIFAR-100, SVHN, STL-10 or a folder "
                     "of your own images.")
PRUNE_SCHEDULES = ("none", "oneshot", "iterative", "agp", "set")
RATIO_FILE_SCHEDULES = ("oneshot", "iterative", "agp")  # set's drop-and-regrow keeps one sparsity for all layers
INIT_PRUNE = ("none", "magnitude", "taylor", "slim", "l1-filter")
SCOPES = ("global", "local")

# Fields that may change between a run and its resumption without making it a different experiment.
RESUMABLE_FIELDS = frozenset({
    "steps", "device", "threads", "data_dir", "download", "keep_checkpoints", "force_new", "detect_anomaly",
    "progress", "eval_batch_size", "out", "init", "compile", "keep_step", "aug_workers",
    "provenance",  # config.json's record of the code that wrote it (torch version, git commit), not a setting
})
# Fields added after the first runs were saved, with the value such a run had: its config.json lacks them.
LEGACY_DEFAULTS = {"dataset": "cifar10", "image_size": 0, "optimizer": "adam", "lr_schedule": "constant",
                   "lr_milestones": "0.5,0.75", "lr_gamma": 0.1, "momentum": 0.9, "nesterov": False,
                   "wd_mode": "decoupled", "init_prune": "none", "init_ratio": 0.5, "prune_ratio_file": ""}


def _recipe(key: str) -> str:
    """The default of a ``RECIPE`` setting for --help, with every algorithm that declares another."""
    return algorithms.recipe_default(key, RECIPE[key])


def _opt(default, help, choices=None, flag=None, cli_default=...):
    """A field with its flag's help; ``cli_default`` (e.g. None: "the dataset's") replaces the default on the
    command line, where validate() resolves it."""
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag,
                                            "cli_default": cli_default})


@dataclass
class CommonConfig:
    """The settings every algorithm shares; ``Config`` adds the algorithms' own options (``algorithm_fields``)."""
    # Data
    dataset: str = _opt("cifar10", "cifar10, cifar100, svhn, svhn-extra (train + extra), stl10, or folder:PATH (your "
                                   "own images: PATH/train/<class>/*, optional PATH/unlabeled/, PATH/test/<class>/*; "
                                   "see docs/datasets.md)")
    data_dir: str = _opt("data", "folder holding the datasets (cifar-10-batches-py/, cifar-100-python/, svhn/, "
                                 "stl10_binary/); not used by folder:PATH")
    download: bool = _opt(False, "download the dataset through torchvision if it is missing")
    image_size: int = _opt(0, "folder:PATH only: resize every image to this square size (0: the most common size "
                              "of the folder's images)")
    n_labeled: int = _opt(250, "labeled images, balanced over classes (STL-10 at 1000: the official fold --seed); 0: "
                               "every training label, balanced or not (the fully supervised references)")
    n_valid: int = _opt(5000, "validation images held out of the unlabeled training images, balanced over classes "
                              "(default: 5000; STL-10 1000 of its labeled-train images, 0 at 5000 labels; folder:PATH "
                              "0)", cli_default=None)
    seed: int = _opt(1, "seed for the labeled split, initialisation and every random draw")
    # Model and algorithm
    model: str = _opt("wrn-28-2", "architecture (see semisup.models.MODELS)")
    algorithm: str = _opt("mixmatch", "the training algorithm, one file each in semisup/algorithms/ (options of "
                                      "the algorithms below; docs/algorithms.md)", algorithms.NAMES)
    init: str = _opt("", "start from the model weights (and shape) of this checkpoint, e.g. a pruned model")
    init_prune: str = _opt("none", "prune the --init model first, as python -m semisup.compress --method M "
                                   "--ratio --init-ratio does with its defaults (its EMA weights); writes "
                                   "init_prune.json: sizes and test accuracy before fine-tuning", INIT_PRUNE)
    init_ratio: float = _opt(0.5, "--init-prune's ratio: of conv/linear weights (magnitude, taylor) or of "
                                  "prunable channels (slim, l1-filter)")
    # Optimisation
    steps: int = _opt(1 << 20, "optimizer steps")
    batch_size: int = _opt(64, "labeled images per optimizer step over all processes (the unlabeled batch is the "
                               "same size, K views each); under torchrun each of N processes takes batch-size/N")
    optimizer: str = _opt(None, "adam (the official MixMatch's) or sgd (with --momentum, --nesterov); default: the "
                                f"algorithm's: {_recipe('optimizer')}", OPTIMIZERS)
    lr: float = _opt(None, "learning rate (at its peak under --lr-schedule); default: the algorithm's: "
                           f"{_recipe('lr')}")
    lr_schedule: str = _opt(None, "constant (MixMatch's), step (x --lr-gamma at each of --lr-milestones), cosine "
                                  "(annealed to 0 at --steps) or cosine-7/16 (lr*cos(7*pi*step/(16*steps)), "
                                  f"FixMatch's); default: the algorithm's: {_recipe('lr_schedule')}", LR_SCHEDULES)
    lr_milestones: str = _opt("0.5,0.75", "step schedule: where the rate drops, as shares of --steps")
    lr_gamma: float = _opt(0.1, "step schedule: the factor at each milestone")
    momentum: float = _opt(0.9, "sgd: momentum")
    nesterov: bool = _opt(None, f"sgd: Nesterov momentum (default: the algorithm's: {_recipe('nesterov')})")
    wd: float = _opt(None, f"weight decay (default: the algorithm's: {_recipe('wd')}); decoupled: conv/linear weights "
                           "*= 1 - wd*lr after each step, as the official MixMatch code")
    wd_mode: str = _opt(None, "decoupled (official MixMatch: conv/linear weights only, after the step), l2 (the "
                              "optimizer's weight_decay on every parameter, as network slimming's SGD) or l2-kernels "
                              "(the optimizer's weight_decay on conv/linear weights only: FixMatch's L2 in the loss); "
                              f"default: the algorithm's: {_recipe('wd_mode')}", WD_MODES)
    ema_decay: float = _opt(0.999, "decay of the parameter EMA")
    warm_averages: bool = _opt(True, "start the EMA (decay min(d, (1+t)/(10+t))) and the batch-norm statistics "
                                     "(momentum max(m, 9/(10+t))) with TF's num_updates rule, so "
                                     "short runs report what they learned; identical to the official updates after "
                                     "9,000 steps (--no-warm-averages: the official code's from the first step)")
    accum_steps: int = _opt(1, "micro-batches per optimizer step (gradient accumulation); must divide the "
                               "per-process batch")
    grad_clip: float = _opt(0.0, "clip the gradient norm to this before each optimizer step (0: off, as the "
                                 "official code)")
    # Evaluation and output
    eval_every: int = _opt(1024, "steps between evaluations and checkpoints")
    eval_batch_size: int = _opt(0, "images per evaluation batch (0: the device's default, 128 on the CPU, 1024 on "
                                   "CUDA)")
    n_eval_last: int = _opt(20, "the reported number is the median EMA test accuracy of this many last evals")
    out: str = _opt("", "run folder (default runs/<dataset>@<n_labeled>[-<algorithm>], a folder:PATH dataset as "
                        "folder-<last part of PATH>)")
    force_new: bool = _opt(False, "start afresh even if --out holds a run with another configuration")
    keep_checkpoints: int = _opt(1, "older checkpoints kept besides last.pt (last-1.pt, ...); older ones are "
                                    "deleted, so a run holds at most N+1 checkpoints")
    # Execution
    device: str = _opt("auto", "auto, cpu or cuda", DEVICES)
    threads: int = _opt(0, "CPU threads (0: PyTorch's default)")
    aug_workers: int = _opt(-1, "processes making the strong views of fixmatch, uda and remixmatch (the views do not "
                                "depend on it): -1 picks 0 on the CPU, where the training threads use the cores, "
                                "and min(8, cores - 1) with CUDA; 0 makes them in the training process")
    amp: str = _opt("auto", "autocast precision: auto (bf16 where it helps), bf16, fp16 (with loss scaling; "
                            "meant for CUDA, runs slowly on the CPU), none", AMP_MODES)
    channels_last: str = _opt("auto", "channels-last memory format: auto, on, off", ("auto", "on", "off"))
    compile: bool = _opt(None, "torch.compile the training forward and backward (unset: on for runs of 20,000 "
                               "steps or more where a compiler backend is available; costs about a minute)")
    sync_bn: bool = _opt(False, "SyncBatchNorm across ranks under torchrun (CUDA only; no effect in one process)")
    detect_anomaly: bool = _opt(False, "enable autograd anomaly detection (slow; for debugging NaNs)")
    progress: bool = _opt(True, "show a progress bar")
    # Compression during training
    slim_lambda: float = _opt(0.0, "network slimming: add S*sign(gamma) to every batch-norm gamma gradient, once per "
                                    "optimizer step (e.g. 1e-4); then python -m semisup.compress --method slim")
    prune_schedule: str = _opt("none", "magnitude pruning of conv/linear weights during training: oneshot (mask at "
                                       "--prune-start, kept after), iterative (zero the smallest at every event; "
                                       "they may grow back), agp (cubic ramp from --prune-initial to --prune-ratio), "
                                       "set (prune at --prune-start, then drop/regrow --set-zeta at every event)",
                               PRUNE_SCHEDULES)
    prune_ratio: float = _opt(0.5, "target fraction of conv/linear weights that are zero")
    prune_scope: str = _opt("global", "one magnitude threshold over all layers, or the same fraction per layer",
                            SCOPES)
    prune_start: int = _opt(0, "first pruning event, in completed optimizer steps (0: before the first step)")
    prune_end: int = _opt(0, "last pruning event; agp reaches --prune-ratio there (0: --steps, so raising "
                             "--steps on resume stretches the rest of the schedule; set it to extend a run)")
    prune_every: int = _opt(1024, "steps between pruning events (iterative, agp, set)")
    prune_initial: float = _opt(0.0, "agp: sparsity at --prune-start, at most --prune-ratio (with "
                                     "--prune-ratio-file: below 1, each layer starting at the smaller of it and its "
                                     "own ratio)")
    prune_ratio_file: str = _opt("", "oneshot, iterative, agp: each conv/linear layer's own target from this ratio "
                                     "file of a magnitude or taylor method (python -m semisup.compress sensitivity "
                                     "--max-drop writes one) instead of --prune-ratio and --prune-scope, which must "
                                     "keep their defaults; layers it does not name are not pruned; the checkpoints "
                                     "keep its ratios and a resumed run refuses a file that changed")
    set_zeta: float = _opt(0.3, "set: fraction of live weights dropped (smallest) and regrown (random) per event")
    keep_step: int = _opt(-1, "also keep the full training state at this step (model, EMA, optimizer, schedule, "
                              "RNG) as RUN/step<K>.pt, never rotated away (0: before the first step; -1: none); "
                              "the point python -m semisup.compress lottery rewinds to")

    def __post_init__(self):
        fill_algorithm_defaults(self)

    @property
    def temperature(self) -> float:
        return 1.0 if self.no_sharpen else self.T

    @property
    def rampup_images(self) -> float:
        """Labeled images over which λu ramps up, as the official code counts it: --rampup-steps × --batch-size
        when set, else --rampup-kimg × 1024 when set (MixMatch's absolute ramp), else --rampup-share of the run's
        images (the baselines' warmup_pos); 0 (no ramp) for an algorithm without one."""
        if getattr(self, "rampup_steps", None):
            return self.rampup_steps * self.batch_size
        if getattr(self, "rampup_kimg", None):
            return self.rampup_kimg * 1024
        return (getattr(self, "rampup_share", None) or 0.0) * self.steps * self.batch_size

    @property
    def lr_milestone_steps(self) -> list:
        """The step schedule's milestones in optimizer steps."""
        return [int(round(float(share) * self.steps)) for share in self.lr_milestones.split(",") if share.strip()]

    @property
    def run_dir(self) -> str:
        if self.out:
            return self.out
        suffix = "" if self.algorithm == "mixmatch" else f"-{self.algorithm}"
        return f"runs/{datasets.tag(self.dataset)}@{self.n_labeled}{suffix}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        d = {k: v for k, v in d.items() if k != "provenance"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return validate(cls(**foreign_options_cleared(d)))


def algorithm_fields() -> list:
    """One dataclass field per algorithm option (``semisup.algorithms``): unset (None) until ``validate`` fills
    in the chosen algorithm's default; the option of another algorithm stays None."""
    out = []
    for name, (default, help_text, choices) in algorithms.all_options().items():
        owners = ", ".join(f"{alg} {value:g}" if isinstance(value, float) else f"{alg} {value}"
                           for alg, value in algorithms.owners(name).items())
        meta = {"help": f"{help_text} [{owners}]", "choices": choices or None, "flag": "--" + name.replace("_", "-"),
                "cli_default": None, "option": True}
        out.append((name, type(default), field(default=None, metadata=meta)))
    return out


Config = dataclasses.make_dataclass("Config", algorithm_fields(), bases=(CommonConfig,))
Config.__doc__ = "Every setting of a run: the shared ones and every algorithm's options (None where not its own)."


def foreign_options_cleared(d: dict) -> dict:
    """``d`` with the options its algorithm does not take set to None: configurations saved before the options
    belonged to their algorithms hold MixMatch's values for every algorithm, and those never applied."""
    spec = algorithms.SPECS.get(d.get("algorithm", "mixmatch"))
    if spec is None:
        return dict(d)
    return {k: (None if k in algorithms.all_options() and k not in spec.options else v) for k, v in d.items()}


def _divisors(n: int) -> str:
    """'a divisor of n', listing them when n is small enough to read."""
    listed = ": " + ", ".join(str(d) for d in range(1, n + 1) if n % d == 0) if 0 < n <= 4096 else ""
    return f"a divisor of {n}{listed}"


def _validate_dataset(cfg: Config) -> None:
    """The dataset's own checks: the class count the balanced split needs, the flags only some datasets take."""
    if not datasets.known(cfg.dataset):
        raise ConfigError(f"--dataset must be one of {', '.join(datasets.CHOICES)} (got {cfg.dataset})")
    spec, folder = datasets.spec_of(cfg.dataset), datasets.is_folder(cfg.dataset)
    k = spec.num_classes
    checks = [
        (folder or not cfg.image_size,
         f"--image-size is for folder:PATH datasets ({cfg.dataset} images are {spec.image_size}x{spec.image_size})"),
        (cfg.image_size == 0 or cfg.image_size >= datasets.FOLDER_MIN_SIZE,
         f"--image-size must be 0 (the most common size) or at least {datasets.FOLDER_MIN_SIZE} (got "
         f"{cfg.image_size})"),
        (not (folder and cfg.download), "--download fetches the paper's datasets; a folder:PATH dataset is read from "
                                        "PATH"),
        (not k or cfg.n_labeled % k == 0, f"--n-labeled must be a multiple of the {k} classes (got {cfg.n_labeled})"),
        (not k or cfg.n_valid % k == 0, f"--n-valid must be a multiple of the {k} classes (got {cfg.n_valid})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def validate(cfg: Config) -> Config:
    """Refuse values that would fail later or silently train something else."""
    _resolve_algorithm(cfg)
    if cfg.n_valid is None:
        cfg.n_valid = datasets.default_n_valid(cfg.dataset, cfg.n_labeled)
    checks = [
        (cfg.lr > 0, f"--lr must be positive (got {cfg.lr})"),
        (cfg.steps >= 1, f"--steps must be at least 1 (got {cfg.steps})"),
        (cfg.eval_every >= 1, f"--eval-every must be at least 1 (got {cfg.eval_every})"),
        (cfg.batch_size >= 1, f"--batch-size must be at least 1 (got {cfg.batch_size})"),
        (cfg.eval_batch_size >= 0, f"--eval-batch-size must not be negative (got {cfg.eval_batch_size})"),
        (cfg.n_labeled >= 0, f"--n-labeled must be 0 (every label) or positive (got {cfg.n_labeled})"),
        (cfg.n_valid >= 0, f"--n-valid must not be negative (got {cfg.n_valid})"),
        (cfg.wd >= 0, f"--wd must not be negative (got {cfg.wd})"),
        (0 <= cfg.ema_decay < 1, f"--ema-decay must be in [0, 1) (got {cfg.ema_decay})"),
        (cfg.n_eval_last >= 1, f"--n-eval-last must be at least 1 (got {cfg.n_eval_last})"),
        (cfg.keep_checkpoints >= 1, f"--keep-checkpoints must be at least 1 (got {cfg.keep_checkpoints}): the "
                                    f"previous checkpoint is the fallback for a damaged last.pt"),
        (cfg.threads >= 0, f"--threads must not be negative (got {cfg.threads})"),
        (cfg.aug_workers >= -1, f"--aug-workers must be -1 (automatic), 0 or positive (got {cfg.aug_workers})"),
        (cfg.slim_lambda >= 0, f"--slim-lambda must not be negative (got {cfg.slim_lambda})"),
        (cfg.init_prune == "none" or cfg.init, f"--init-prune {cfg.init_prune} prunes the --init checkpoint; "
                                               f"pass --init"),
        (0 <= cfg.init_ratio < 1, f"--init-ratio must be in [0, 1) (got {cfg.init_ratio})"),
        (cfg.accum_steps >= 1, f"--accum-steps must be at least 1 (got {cfg.accum_steps})"),
        (cfg.accum_steps < 1 or cfg.batch_size % cfg.accum_steps == 0,
         f"--accum-steps {cfg.accum_steps} does not divide --batch-size {cfg.batch_size}: every micro-batch must "
         f"hold the same number of labeled images (choose {_divisors(cfg.batch_size)})"),
        (cfg.grad_clip >= 0, f"--grad-clip must not be negative (got {cfg.grad_clip})"),
        (-1 <= cfg.keep_step <= cfg.steps,
         f"--keep-step must be -1 (none) or a step in [0, --steps {cfg.steps}] (got {cfg.keep_step})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    _validate_dataset(cfg)
    _validate_pruning(cfg)
    _validate_optimizer(cfg)
    return cfg


# Each option's admissible values: option → (test, what the message says it must be).
OPTION_RANGES = {
    "K": (lambda v: v >= 1, "at least 1"), "T": (lambda v: v > 0, "positive"), "alpha": (lambda v: v > 0, "positive"),
    "lambda_u": (lambda v: v >= 0, "non-negative"), "lambda_ent": (lambda v: v >= 0, "non-negative"),
    "rampup_steps": (lambda v: v >= 0, "non-negative"), "rampup_kimg": (lambda v: v >= 0, "non-negative"),
    "rampup_share": (lambda v: v >= 0, "non-negative"), "threshold": (lambda v: 0 < v < 1, "in (0, 1)"),
    "confidence": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "uratio": (lambda v: v >= 1, "at least 1"), "tsa_pos": (lambda v: v >= 0, "non-negative"),
    "vat_eps": (lambda v: v >= 0, "non-negative"), "vat_xi": (lambda v: v > 0, "positive"),
    "smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "w_match": (lambda v: v >= 0, "non-negative"), "w_kl": (lambda v: v >= 0, "non-negative"),
    "w_rot": (lambda v: v >= 0, "non-negative"), "warmup_kimg": (lambda v: v >= 0, "non-negative"),
    "dbuf": (lambda v: v >= 1, "at least 1"),
    "ema_p": (lambda v: 0 <= v < 1, "in [0, 1)"), "n_sigma": (lambda v: v > 0, "positive"),
    "lambda_fair": (lambda v: v >= 0, "non-negative"), "dash_warmup": (lambda v: v >= 0, "non-negative"),
    "dash_every": (lambda v: v >= 1, "at least 1"), "dash_gamma": (lambda v: v > 1, "above 1 (ρ decays)"),
    "dash_c": (lambda v: v > 0, "positive"), "rho_min": (lambda v: v > 0, "positive"),
}


def fill_algorithm_defaults(cfg) -> None:
    """Give the algorithm's options that are unset (None) its defaults, and the recipe settings (``RECIPE``) the
    algorithm's values where it declares them."""
    spec = algorithms.SPECS.get(cfg.algorithm)
    if spec is None:
        return
    for name, (default, _, _) in spec.options.items():
        if getattr(cfg, name, None) is None:
            setattr(cfg, name, default)
    for name, default in RECIPE.items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, spec.defaults.get(name, default))


def _resolve_algorithm(cfg: Config) -> None:
    """Fill in the algorithm's defaults; refuse another algorithm's option, or a value out of its range."""
    spec = algorithms.SPECS.get(cfg.algorithm)
    if spec is None:
        raise ConfigError(f"--algorithm must be one of {', '.join(algorithms.NAMES)} (got {cfg.algorithm})")
    for name, (_, _, choices) in algorithms.all_options().items():
        flag, value = "--" + name.replace("_", "-"), getattr(cfg, name)
        if name not in spec.options:
            if value is not None:
                raise ConfigError(f"{flag} is an option of {', '.join(algorithms.owners(name))}, not of "
                                  f"{cfg.algorithm}")
            continue
        test, must = OPTION_RANGES.get(name, (lambda v: True, ""))
        if (choices and value not in choices) or not test(value):
            must = f"one of {', '.join(choices)}" if choices else must
            raise ConfigError(f"{flag} must be {must} (got {value})")
    fill_algorithm_defaults(cfg)
    if cfg.algorithm == "dash" and cfg.dash_warmup >= cfg.steps:
        raise ConfigError(f"--dash-warmup {cfg.dash_warmup} is the whole run (--steps {cfg.steps}): dash would never "
                          f"train on an unlabeled image; lower it below --steps")
    if spec.needs_ema and cfg.ema_decay == 0:
        raise ConfigError(f"{cfg.algorithm}'s teacher is the EMA model: --ema-decay 0 would make it the live model "
                          f"(use pi-model for that)")


def _validate_optimizer(cfg: Config) -> None:
    try:
        milestones = [float(s) for s in cfg.lr_milestones.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--lr-milestones must be shares of --steps separated by commas, e.g. 0.5,0.75 (got "
                          f"{cfg.lr_milestones})") from None
    checks = [
        (cfg.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {cfg.optimizer})"),
        (cfg.lr_schedule in LR_SCHEDULES,
         f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)} (got {cfg.lr_schedule})"),
        (cfg.wd_mode in WD_MODES, f"--wd-mode must be one of {', '.join(WD_MODES)} (got {cfg.wd_mode})"),
        (all(0 < m < 1 for m in milestones) and milestones == sorted(milestones),
         f"--lr-milestones must be increasing shares of --steps in (0, 1) (got {cfg.lr_milestones})"),
        (0 < cfg.lr_gamma <= 1, f"--lr-gamma must be in (0, 1] (got {cfg.lr_gamma})"),
        (0 <= cfg.momentum < 1, f"--momentum must be in [0, 1) (got {cfg.momentum})"),
        (not cfg.nesterov or (cfg.optimizer == "sgd" and cfg.momentum > 0),
         "--nesterov needs --optimizer sgd and a positive --momentum"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _default(name: str):
    return CommonConfig.__dataclass_fields__[name].default


def _validate_pruning(cfg: Config) -> None:
    end = cfg.prune_end or cfg.steps
    by_file = bool(cfg.prune_ratio_file)
    checks = [
        (cfg.prune_schedule in PRUNE_SCHEDULES,
         f"--prune-schedule must be one of {', '.join(PRUNE_SCHEDULES)} (got {cfg.prune_schedule})"),
        (cfg.prune_scope in SCOPES, f"--prune-scope must be global or local (got {cfg.prune_scope})"),
        (0 <= cfg.prune_ratio < 1, f"--prune-ratio must be in [0, 1) (got {cfg.prune_ratio})"),
        (not by_file or (cfg.prune_ratio, cfg.prune_scope) == (_default("prune_ratio"), _default("prune_scope")),
         "--prune-ratio-file gives every layer its own ratio: drop --prune-ratio and --prune-scope"),
        (by_file or 0 <= cfg.prune_initial <= cfg.prune_ratio,
         f"--prune-initial must be in [0, --prune-ratio] (got {cfg.prune_initial})"),
        (not by_file or 0 <= cfg.prune_initial < 1,
         f"--prune-initial must be in [0, 1) (got {cfg.prune_initial}); with --prune-ratio-file each layer ramps "
         f"from the smaller of it and its own ratio"),
        (0 < cfg.set_zeta < 1, f"--set-zeta must be in (0, 1) (got {cfg.set_zeta})"),
        (cfg.prune_every >= 1, f"--prune-every must be at least 1 (got {cfg.prune_every})"),
        (cfg.prune_start >= 0 and cfg.prune_end >= 0, "--prune-start and --prune-end must not be negative"),
        (cfg.prune_schedule == "none" or cfg.prune_start <= end,
         f"--prune-start ({cfg.prune_start}) is after the last pruning event ({end})"),
        (not cfg.prune_ratio_file or cfg.prune_schedule in RATIO_FILE_SCHEDULES,
         f"--prune-ratio-file needs --prune-schedule oneshot, iterative or agp (got {cfg.prune_schedule})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def config_differences(old: dict, new: dict) -> list:
    """The keys that make two configurations different experiments (those outside RESUMABLE_FIELDS)."""
    old = foreign_options_cleared({**LEGACY_DEFAULTS, **old})
    new = foreign_options_cleared({**LEGACY_DEFAULTS, **new})
    keys = sorted((set(old) | set(new)) - RESUMABLE_FIELDS)
    return [k for k in keys if old.get(k) != new.get(k)]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, except an unset one (None), whose help text says what decides it."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage dump) and exits with code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _flag(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def build_parser(prog: Optional[str] = None, description: Optional[str] = None) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description=description,
                     formatter_class=_HelpFormatter, allow_abbrev=False)
    options = parser.add_argument_group(
        "options of the algorithms", "each flag belongs to the algorithms listed after its help, with their "
        "defaults; any other algorithm refuses it")
    for f in fields(Config):
        group = options if f.metadata.get("option") else parser
        flag, help_text = _flag(f), f.metadata["help"]
        default = f.default if f.metadata["cli_default"] is ... else f.metadata["cli_default"]
        if f.type in (bool, "bool"):
            # BooleanOptionalAction reads any flag starting with --no- as "False": a field whose own flag is
            # --no-x (no_sharpen) must be a plain switch, or --no-x would be silently ignored.
            kwargs = (dict(action="store_const", const=True) if flag.startswith("--no-")
                      else dict(action=argparse.BooleanOptionalAction))
            group.add_argument(flag, dest=f.name, default=default, help=help_text, **kwargs)
            continue
        kind = {"int": int, "float": float, "str": str}.get(f.type, f.type)
        group.add_argument(flag, dest=f.name, type=kind, default=default, choices=f.metadata["choices"],
                           help=help_text, metavar=f.name.upper() if not f.metadata["choices"] else None)
    return parser


def parse_args(argv=None, prog: Optional[str] = None, description: Optional[str] = None) -> Config:
    """Parse argv into a validated Config; on bad input print one line and exit with code 2."""
    args = build_parser(prog, description).parse_args(argv)
    try:
        return validate(Config(**vars(args)))
    except ConfigError as err:
        print(f"{prog or sys.argv[0]}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
