"""``python -m semisup.compress lottery --out DIR --rounds R [options] -- <train.py flags>``: lottery tickets with
rewinding and their two controls, every run an ordinary, resumable train.py run in its own folder.

- DIR/round0: the train.py flags as given, keeping the full state at --rewind-step K (``--keep-step K``:
  DIR/round0/step<K>.pt).
- DIR/round<r> (r >= 1): the previous round's masks minus the --prune-fraction of the surviving conv/linear weights
  with the smallest magnitude in that round's final raw weights; survivors, EMA, optimizer, schedule, algorithm
  state, RNG and sampler positions back at step K, trained on from step K to --steps.
- DIR/reinit<r>: the same masks on a fresh initialisation (seed + 7919·r); DIR/random<r>: random masks with the
  ticket's per-layer sparsity (drawn from seed + 104729·r), the survivors at their step-K values. Both start at
  step K with the ticket's optimizer, schedule, RNG and sampler state.

A round r >= 1 starts from a checkpoint the lottery writes into its folder (``lottery.rewound_state``), which
train.py resumes like any other. Rerunning the same command skips the finished runs (summary.json at --steps with
this configuration) and resumes the unfinished one; a larger --rounds adds rounds.
"""
import dataclasses
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, List, Optional

from ..checkpoint import NEW_SUFFIX, CheckpointError, load_checkpoint, load_latest, rotation, save_checkpoint, step_path
from ..compress import lottery as lt
from ..config import Config, ConfigError, config_differences
from ..data import prepare_from_config
from ..records import read_json
from ..runner import check_run_dir, checked_init, train
from . import lottery_report as report
from .launch import say
from .sweep import finished_step

# train.py flags the lottery sets itself, or that would break it: (field, refused when, why)
REFUSED_TRAIN_FLAGS = (
    ("out", lambda v: bool(v), "--out among the train.py flags: every run goes to its own folder under the "
                               "lottery's --out"),
    ("keep_step", lambda v: v != -1, "--keep-step among the train.py flags: the lottery keeps the state at "
                                     "--rewind-step itself"),
    ("force_new", lambda v: bool(v), "--force-new among the train.py flags would restart finished runs; move the "
                                     "lottery's folder aside instead"),
    ("prune_schedule", lambda v: v != "none", "--prune-schedule among the train.py flags: a lottery round's "
                                              "masks are its own, fixed for the whole run"),
)


@dataclass(frozen=True)
class LotteryOptions:
    """The lottery's own settings (the train.py configuration of its runs is a Config beside them)."""
    out: str
    rounds: int
    prune_fraction: float = 0.2  # open_lth's
    rewind_step: int = 0  # 0: the initialisation, the original lottery ticket
    scope: str = "global"
    controls: bool = True


@dataclass(frozen=True)
class Run:
    kind: str  # ticket, reinit or random
    round: int

    @property
    def name(self) -> str:
        return f"{'round' if self.kind == 'ticket' else self.kind}{self.round}"


def plan(rounds: int, controls: bool) -> List[Run]:
    """round0, then per round the ticket and (with the controls) reinit and random, in the order they run."""
    runs = [Run("ticket", 0)]
    for r in range(1, rounds + 1):
        runs += [Run(kind, r) for kind in (report.KINDS if controls else ("ticket",))]
    return runs


def check(args: LotteryOptions, cfg: Config) -> None:
    checks = [(args.rounds >= 1, f"--rounds must be at least 1 (got {args.rounds})"),
              (0 < args.prune_fraction < 1, f"--prune-fraction must be in (0, 1) (got {args.prune_fraction})"),
              (args.rewind_step >= 0, f"--rewind-step must not be negative (got {args.rewind_step})"),
              (args.rewind_step < cfg.steps, f"--rewind-step {args.rewind_step} is not before the run's --steps "
                                             f"{cfg.steps}: every round trains from the rewind step to --steps"),
              (int(os.environ.get("WORLD_SIZE", "1")) == 1, "the lottery runs its rounds one after another in one "
                                                            "process; start it with python, not torchrun")]
    checks += [(not refused(getattr(cfg, name)), message) for name, refused, message in REFUSED_TRAIN_FLAGS]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def finished_summary(cfg: Config) -> Optional[dict]:
    """summary.json of a run that reached --steps with this configuration (the sweep's test of a finished run),
    else None."""
    if finished_step(SimpleNamespace(out=cfg.out), cfg) is None:
        return None
    return read_json(os.path.join(cfg.out, "summary.json"))


def has_checkpoint(cfg: Config) -> bool:
    paths = rotation(cfg.out, cfg.keep_checkpoints)
    return any(os.path.exists(p) for p in [paths[0] + NEW_SUFFIX, *paths])


class Lottery:
    """The rounds of one lottery folder: which runs are done, the masks of each round, the report."""

    def __init__(self, args: LotteryOptions, cfg: Config):
        self.args, self.cfg, self.out = args, cfg, args.out
        self.runs = plan(args.rounds, args.controls)
        self.sparsity, self._step_state = {}, None

    def config_of(self, run: Run) -> Config:
        keep = self.args.rewind_step if run == Run("ticket", 0) else -1
        return dataclasses.replace(self.cfg, out=os.path.join(self.out, run.name), keep_step=keep)

    def settings(self) -> dict:
        a = self.args
        return {"rounds": a.rounds, "prune_fraction": a.prune_fraction, "rewind_step": a.rewind_step,
                "scope": a.scope, "controls": a.controls, "masks_from": "raw weights at the end of the round before",
                "reinit_seed": f"seed + {lt.REINIT_SEED_STRIDE} * round",
                "random_mask_seed": f"seed + {lt.RANDOM_SEED_STRIDE} * round", "config": self.cfg.to_dict()}

    # ----- before anything is written ---------------------------------------------------------------------
    def check_folder(self) -> None:
        """Refuse a folder that holds a lottery with other settings, or a run with another configuration."""
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise ConfigError(f"--out {self.out} exists and is not a folder")
        old = read_json(os.path.join(self.out, report.JSON))
        if isinstance(old, dict) and isinstance(old.get("settings"), dict):
            self._check_settings(old["settings"])
        for run in self.runs:
            check_run_dir(self.config_of(run))

    def _check_settings(self, old: dict) -> None:
        """The options, and the train.py configuration, resumable fields included where they change what the
        rounds compare: --steps (where every round ends) and --init (what round 0 starts from)."""
        new = self.settings()
        diff = [k for k in ("prune_fraction", "rewind_step", "scope") if old.get(k) != new[k]]
        saved = old.get("config") or {}
        diff += config_differences(saved, new["config"])
        diff += [k for k in ("steps", "init") if saved.get(k) != new["config"][k]]
        if diff:
            shown = ", ".join(f"{k}: {old.get(k, saved.get(k))!r} -> {new.get(k, new['config'].get(k))!r}"
                              for k in diff[:4])
            raise ConfigError(f"{self.out} holds a lottery with other settings ({shown}); use another --out")

    def check_inputs(self) -> None:
        """What train.py would refuse about every run still to train, before the lottery writes anything: the
        data, the model name and --init (readable, of --model, for the data's classes, fitting its shape)."""
        if all(finished_summary(self.config_of(run)) is not None for run in self.runs):
            return
        data = prepare_from_config(self.cfg)
        checked_init(self.config_of(Run("ticket", 0)), data.num_classes)

    # ----- the runs -----------------------------------------------------------------------------------------
    def run(self) -> dict:
        self.check_folder()
        self.check_inputs()
        os.makedirs(self.out, exist_ok=True)
        self.write_report()
        self.train(Run("ticket", 0))
        self.sparsity[0] = lt.sparsity_of(lt.full_masks(self.latest(Run("ticket", 0))))
        for r in range(1, self.args.rounds + 1):
            self.run_round(r)
        return self.write_report()

    def run_round(self, r: int) -> None:
        masks = self.ticket_masks(r)
        self.train(Run("ticket", r), lambda: self.rewound(Run("ticket", r), masks))
        if self.args.controls:
            self.train(Run("reinit", r), lambda: self.rewound(Run("reinit", r), masks, self.fresh(r)))
            random_masks = lt.random_masks_like(masks, lt.random_mask_generator(self.cfg.seed, r))
            self.train(Run("random", r), lambda: self.rewound(Run("random", r), random_masks))

    def rewound(self, run: Run, masks, weights: Optional[dict] = None) -> dict:
        return lt.rewound_state(self.step_state(), masks, self.config_of(run).to_dict(), weights)

    def fresh(self, r: int) -> dict:
        """The reinit control's initialisation for round r."""
        state = self.step_state()
        return lt.fresh_weights(state["model_name"], state["arch"], lt.reinit_seed(self.cfg.seed, r))

    def train(self, run: Run, start: Optional[Callable[[], dict]] = None) -> None:
        """Train ``run`` unless it is finished; a round r >= 1 starts from its rewound checkpoint when its folder
        holds none yet (otherwise it resumes where it stopped)."""
        cfg = self.config_of(run)
        if finished_summary(cfg) is not None:
            say(f"lottery: {run.name}: finished, skipped")
            return
        if start is not None and not has_checkpoint(cfg):
            say(f"lottery: {run.name}: {self.describe(run)}, from step {self.args.rewind_step}")
            state = start()
            os.makedirs(cfg.out, exist_ok=True)
            save_checkpoint(state, cfg.out, cfg.keep_checkpoints)
        else:
            say(f"lottery: {run.name}: training")
        train(cfg)
        self.write_report()

    def describe(self, run: Run) -> str:
        sparsity = f"{self.sparsity[run.round]:.2%} sparse"
        return {"ticket": f"the ticket, {sparsity}",
                "reinit": f"the ticket's masks ({sparsity}) on a fresh initialisation",
                "random": f"random masks with the ticket's per-layer sparsity ({sparsity})"}[run.kind]

    # ----- masks and states ---------------------------------------------------------------------------------
    def latest(self, run: Run) -> Optional[dict]:
        cfg = self.config_of(run)
        try:
            return load_latest(cfg.out, cfg.keep_checkpoints, "cpu", warn=lambda m: say(f"warning: {m}"))[0]
        except CheckpointError as err:
            raise ConfigError(str(err)) from None

    def ticket_masks(self, r: int):
        """Round r's masks: those its folder already holds, or the next ones after round r - 1's final weights."""
        state = self.latest(Run("ticket", r))
        if state is not None:
            masks = lt.full_masks(state)
        else:
            prev = self.final_state(Run("ticket", r - 1))
            masks = lt.full_masks(prev)
            weights = {k: prev["model"][k] for k in masks}
            masks = lt.next_masks(weights, masks, self.args.prune_fraction, self.args.scope)
        self.sparsity[r] = lt.sparsity_of(masks)
        return masks

    def final_state(self, run: Run) -> dict:
        """``run``'s checkpoint at --steps: the weights the next round's masks rank. Refused when the newest
        readable one is earlier (a damaged last.pt falls back to last-1.pt, which after a round's only save is
        its rewound start)."""
        state = self.latest(run)
        step = None if state is None else state.get("step")
        if step != self.cfg.steps:
            folder = self.config_of(run).out
            raise ConfigError(f"{folder}: its newest readable checkpoint is at step {step}, not at --steps "
                              f"{self.cfg.steps}: round {run.round + 1}'s masks rank {run.name}'s final weights; "
                              f"restore its last.pt, or move {folder} aside to train it again")
        return state

    def step_state(self) -> dict:
        """round0's state at the rewind step (read once)."""
        if self._step_state is None:
            path = step_path(self.config_of(Run("ticket", 0)).out, self.args.rewind_step)
            try:
                self._step_state = load_checkpoint(path)
            except CheckpointError as err:
                raise ConfigError(f"{err}: round 0 keeps the state of --rewind-step there; move "
                                  f"{os.path.dirname(path)} aside to train round 0 again") from None
        return self._step_state

    # ----- results ------------------------------------------------------------------------------------------
    def rows(self) -> List[dict]:
        planned = set(self.runs)
        rows = []
        for r in range(self.args.rounds + 1):
            row = {"round": r, "sparsity": self.sparsity.get(r),
                   "expected_sparsity": lt.expected_sparsity(self.args.prune_fraction, r)}
            for kind in report.KINDS:
                summary = finished_summary(self.config_of(Run(kind, r))) if Run(kind, r) in planned else None
                row[kind] = summary.get("test_acc_ema_final") if summary else None
            row["folders"] = {kind: Run(kind, r).name for kind in report.KINDS if Run(kind, r) in planned}
            rows.append(row)
        return rows

    def write_report(self) -> dict:
        record = {"settings": self.settings(), "rounds": self.rows()}
        report.write(record, self.out)
        return record
