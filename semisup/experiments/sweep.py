"""Sweeps of train.py runs for the paper's tables: one run folder per (table, row, labels, seed).

Each run is its own ``python train.py`` process, so killing the sweep leaves every run resumable: running the
same sweep again skips the runs whose summary.json reached the requested steps and lets train.py resume the
others from their last checkpoints. Run folders: OUT/<table>/<row>@<labels>/seed<k>. Where the runs go is the
launcher's: one after another or ``--parallel N`` at once on this machine (``launch.py``), or one SLURM job array
(``slurm.py``); ``sweep.py status OUT`` reports on them (``status.py``).
"""
import json
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .. import algorithms
from ..config import Config, ConfigError, build_parser, config_differences, validate
from ..datasets import spec_of
from . import launch, slurm
from .plan_record import record_plan
from .settings import PROTOCOL_FLAGS, TABLES

TRAIN_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "train.py")

# Flags the sweep sets itself, and flags that define rows: passing them through would mislabel runs.
OWNED_FLAGS = frozenset({"--out", "--seed", "--n-labeled", "--steps", "--eval-every", "--data-dir", "--algorithm",
                         "--K", "--T", "--no-sharpen", "--ema-guess", "--no-ema-guess", "--mixup", "--force-new",
                         "--dataset"})


@dataclass(frozen=True)
class Run:
    table: str
    row: str
    labels: int
    seed: int
    out: str
    argv: Tuple[str, ...]
    needs: Tuple[str, ...] = ()  # run folders whose last.pt this run starts from: they must finish first

    @property
    def name(self) -> str:
        return f"{self.table} {self.row}@{self.labels} seed{self.seed}"

    def command(self) -> str:
        return shlex.join(["python", "train.py", *self.argv])

    def config(self) -> Config:
        """The configuration train.py will build from ``argv``; bad flags exit 2 with one line, as train.py does."""
        parser = build_parser(prog="sweep.py: train.py flags")
        return validate(Config(**vars(parser.parse_args(list(self.argv)))))


def check_extra(extra: Sequence[str]) -> None:
    for token in extra:
        flag = token.split("=", 1)[0]
        if flag in OWNED_FLAGS:
            raise ConfigError(f"{flag} is set by the sweep for each run and cannot be passed through to train.py")


def _pick(asked, known: Sequence, what: str) -> list:
    unknown = [a for a in asked or () if a not in known]
    if unknown:
        raise ConfigError(f"unknown {what}: {', '.join(map(str, unknown))} (choose from "
                          f"{', '.join(map(str, known))})")
    return list(asked) if asked else list(known)


def passes(extra: Sequence[str], flag: str) -> bool:
    """Whether the pass-through flags set ``flag`` (as ``--flag value`` or ``--flag=value``)."""
    return any(token == flag or token.startswith(flag + "=") for token in extra)


def protocol_flags(extra: Sequence[str]) -> List[str]:
    """The paper's protocol (PROTOCOL_FLAGS), less what the user chose: ``--n-valid 5000`` keeps a validation set."""
    return [part for flag, value in PROTOCOL_FLAGS if not passes(extra, flag) for part in (flag, value)]


def plan(table: str, out: str, seeds: Sequence[int] = (), rows: Sequence[str] = (), labels: Sequence[int] = (),
         steps: Optional[int] = None, eval_every: Optional[int] = None, data_dir: Optional[str] = None,
         extra: Sequence[str] = ()) -> List[Run]:
    """The runs of one table, seed by seed (so a whole first seed finishes before the second starts)."""
    if table not in TABLES:
        raise ConfigError(f"unknown table {table!r} (choose from {', '.join(TABLES)})")
    spec = TABLES[table]
    rows = _pick(rows, list(spec.rows), "rows")
    # a fine-tuning row brings the row it starts from, just before it (a run cannot start without its source)
    rows = list(dict.fromkeys(x for r in rows for x in (*([spec.starts_from[r]] if r in spec.starts_from else []), r)))
    chosen = bool(labels or seeds)  # asked for by name: run every row there; else the cells the paper ran
    labels = list(labels) if labels else list(spec.labels)
    check_extra(extra)
    if spec.starts_from and any(passes(extra, flag) for flag in ("--init", "--init-prune", "--init-ratio")):
        raise ConfigError(f"--init, --init-prune and --init-ratio are set by the {table} sweep: its pruned rows "
                          f"start from the runs before them")
    shared = protocol_flags([*spec.common, *extra])
    steps = spec.steps if steps is None else steps
    if spec.n_evals and steps and eval_every is None:
        eval_every = max(1, steps // spec.n_evals)
    ramp = []  # MixMatch's ramp scaled to a short run (the baselines' ramp is a share of the run already)
    if spec.rampup_fraction is not None and steps and not passes(extra, "--rampup-steps"):
        ramp = ["--rampup-steps", str(max(1, round(steps * spec.rampup_fraction)))]
    for flag, value in (("--steps", steps), ("--eval-every", eval_every), ("--data-dir", data_dir)):
        if value is not None:
            shared += [flag, str(value)]
    runs = []
    for seed in seeds or spec.seeds:
        for n in labels:
            for row in (r for r in rows if chosen or spec.has(r, n, seed)):
                folder = os.path.join(out, table, f"{row}@{n}", f"seed{seed}")
                own_ramp = scaled_ramp(ramp, algorithm_of(spec.rows[row]), [*spec.common, *spec.rows[row], *extra])
                needs = ((os.path.join(out, table, f"{spec.starts_from[row]}@{n}", f"seed{seed}"),)
                         if row in spec.starts_from else ())
                init = ("--init", os.path.join(needs[0], "last.pt")) if needs else ()
                argv = (*spec.common, *spec.rows[row], *init, "--n-labeled", str(n), "--seed", str(seed), "--out",
                        folder, *shared, *own_ramp, *extra)
                runs.append(Run(table, row, n, seed, folder, tuple(argv), needs))
    return runs


def scaled_ramp(ramp: List[str], algorithm: str, flags: Sequence[str]) -> List[str]:
    """A table's ramp scaled to its short runs, for the algorithms whose ramp is counted in images rather than as a
    share of the run: MixMatch's λu (``--rampup-steps``), ReMixMatch's w_match and w_kl (``--warmup-kimg``, the
    same steps at the run's batch size)."""
    if not ramp or algorithm not in ("mixmatch", "remixmatch"):
        return []
    if algorithm == "mixmatch":
        return ramp
    flags = list(flags)
    batch = int(flags[flags.index("--batch-size") + 1]) if "--batch-size" in flags else 64
    return ["--warmup-kimg", f"{int(ramp[1]) * batch / 1024:g}"]


def finished_step(run: Run, cfg: Config) -> Optional[int]:
    """The step of a run whose summary.json reached ``cfg.steps`` with this same configuration, else None."""
    try:
        with open(os.path.join(run.out, "summary.json")) as f:
            step = int(json.load(f).get("step", 0))
        with open(os.path.join(run.out, "config.json")) as f:
            old = json.load(f)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if config_differences(old, cfg.to_dict()) or step < cfg.steps:
        return None
    return step


def unfinished_needs(runs: Sequence[Run], configs: Sequence[Config]):
    """``blocked(run)``: the folders of the runs ``run`` starts from that have not finished (launch.py waits)."""
    by_out = {run.out: (run, cfg) for run, cfg in zip(runs, configs)}

    def blocked(run: Run) -> List[str]:
        return [need for need in run.needs if need not in by_out or finished_step(*by_out[need]) is None]

    return blocked


def algorithm_of(flags: Sequence[str]) -> str:
    """The --algorithm a row's flags choose (train.py's default: mixmatch)."""
    flags = list(flags)
    return flags[flags.index("--algorithm") + 1] if "--algorithm" in flags else "mixmatch"


def relative_step_cost(cfg: Config) -> float:
    """Work of one optimizer step relative to one K=2 MixMatch training step, evaluation included.

    Counts image passes with forward = 1 and backward = 2: MixMatch guesses on K·B images (forward only) and
    trains on (1+K)·B (forward and backward) = 11·B at K=2; the others as their files declare (STEP_COST: the
    supervised ones 3·B, VAT 13·B); each evaluation runs both models over the validation and the dataset's test
    images (forward only), spread over ``eval_every`` steps.
    """
    per_image = cfg.K + 3 * (1 + cfg.K) if cfg.algorithm == "mixmatch" else algorithms.SPECS[cfg.algorithm].step_cost
    if getattr(cfg, "uratio", None):  # FixMatch, UDA: the joint pass over B + 2μB images, CTAugment's probe pass
        per_image = 3 * (1 + 2 * cfg.uratio) + (cfg.strong_aug == "cta")
    evaluation = 2 * (cfg.n_valid + spec_of(cfg.dataset).test_images) / cfg.eval_every
    return (cfg.batch_size * per_image + evaluation) / (cfg.batch_size * 11)


def cost_line(table: str, configs: Sequence[Config]) -> str:
    """What the runs cost, printed before they start: steps, and steps × each algorithm's passes per step in units
    of one K=2 MixMatch step (``relative_step_cost``)."""
    steps = sum(cfg.steps for cfg in configs)
    work = sum(cfg.steps * relative_step_cost(cfg) for cfg in configs)
    return (f"{table}: {len(configs)} run{'s' * (len(configs) != 1)}, {steps:,} steps, as much work as {work:,.0f} "
            f"K=2 MixMatch steps (sweep.py --estimate SEC_PER_STEP turns it into device-hours)")


def estimate_hours(configs: Sequence[Config], sec_per_step: float) -> float:
    """Device-hours of the runs if one K=2 MixMatch training step takes ``sec_per_step`` seconds."""
    return sum(cfg.steps * sec_per_step * relative_step_cost(cfg) for cfg in configs) / 3600


def render_tables(folder: str) -> None:
    """The table of what the sweep ran, with its learning curves, as ``scripts/tables.py FOLDER`` writes them."""
    from .tables import render
    try:
        text, files = render(folder)
    except FileNotFoundError:
        return
    print(text)
    print("wrote " + ", ".join(files))


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def launch_runs(args, runs: List[Run], configs: List[Config], extra: Sequence[str], train_py: str) -> int:
    if args.launcher == "slurm":
        if args.parallel != 1:
            raise ConfigError("--parallel is for --launcher local; on SLURM every run is its own array task")
        folder = args.slurm_folder or os.path.join(args.out, ".submitit")
        return slurm.submit_sweep(runs, configs, slurm.check(args), folder, train_py, args.slurm_max_timeouts,
                                  finished_step, args.out)
    print(cost_line(args.table, configs), flush=True)
    threads_given = any(t.split("=", 1)[0] == "--threads" for t in extra)
    run_slots = launch.slots(args.parallel, threads_given) if args.parallel != 1 else None
    record_plan(args.out, runs)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        blocked = unfinished_needs(runs, configs)
        if run_slots:
            failed = launch.execute_parallel(list(zip(runs, configs)), train_py, finished_step, run_slots,
                                             blocked=blocked)
        else:
            failed = [(run, rc, None) for run, rc in launch.execute(list(zip(runs, configs)), train_py,
                                                                     finished_step, blocked=blocked)]
    except (KeyboardInterrupt, SystemExit) as err:
        print("sweep.py: interrupted; run the same command again to resume", file=sys.stderr)
        return err.code if isinstance(err, SystemExit) else 130
    print(f"{len(runs) - len(failed)} of {len(runs)} runs finished")
    render_tables(os.path.join(args.out, args.table))
    for run, rc, log in failed:
        what = f"failed (exit code {rc})" if rc is not None else "not started (a run it starts from failed)"
        print(f"{what}: {run.command()}" + (f" (log {log})" if log else ""), file=sys.stderr)
    return 1 if failed else 0
