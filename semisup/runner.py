"""``train.py``'s body: set up a run folder, resume it if it exists, train, log, evaluate and summarise.

Run folder: config.json, metrics.jsonl (one line per evaluation), TensorBoard events, last.pt (+ the previous
checkpoint), summary.json at the end. Rerunning the same command resumes exactly where the last checkpoint left off.
"""
import json
import os
import sys
import time
from typing import Optional, Tuple

import torch

from . import stop
from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_latest,
    model_from_checkpoint,
    save_checkpoint,
    save_step_checkpoint,
)
from .compress.init_prune import RECORD as INIT_PRUNE_RECORD
from .compress.init_prune import pruned_init
from .compress.training import check_resumed
from .compress.training import install as install_compression
from .config import TRAIN_DESCRIPTION, Config, ConfigError, config_differences, first_line, parse_args
from .data import SSLData, prepare_from_config
from .distributed import any_rank, barrier, broadcast_from_main, mean_over_ranks, shutdown
from .engine import Trainer
from .guard import LossGuard, NonFiniteLoss, check_weights_finite, guarded_step
from .masks import Masks
from .models import MODELS, create_model, unknown_model
from .provenance import provenance
from .records import json_line, summary, write_json
from .runtime import device_name, make_runtime
from .tblog import EventLog

LOG_EVERY = 10  # steps between progress-bar updates (each one reads the losses back from the device)


def _show_differences(old: dict, new: dict, keys) -> str:
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])


def check_run_dir(cfg: Config) -> str:
    """Check, writing nothing, that ``--out`` is free or holds this same experiment."""
    out = cfg.run_dir
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} exists and is not a folder")
    path = os.path.join(out, "config.json")
    if os.path.exists(path) and not cfg.force_new:
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path} is unreadable ({err}); use another --out or --force-new") from None
        diff = config_differences(old, cfg.to_dict())
        if diff:
            raise ConfigError(f"{out} holds a run with another configuration "
                              f"({_show_differences(old, cfg.to_dict(), diff)}); "
                              f"use another --out, or --force-new to move that run aside and start afresh")
    return out


def make_run_dir(cfg: Config) -> str:
    """Create the run folder; with --force-new, first move a previous run aside (never delete it)."""
    out = cfg.run_dir
    try:
        if os.path.isdir(out) and cfg.force_new and os.listdir(out):
            aside = f"{out.rstrip('/')}.old-{time.strftime('%Y%m%d-%H%M%S')}"
            os.replace(out, aside)
            print(f"moved the previous run in {out} to {aside}", file=sys.stderr)
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the run folder {out}: {err}") from None
    return out


def build_model(cfg: Config, data: SSLData) -> Tuple[torch.nn.Module, Masks, Optional[dict]]:
    """(the --model network for the dataset, or the shape and weights of --init, pruned first by --init-prune;
    the masks to keep while training; the record of --init-prune, else None)."""
    init = checked_init(cfg, data.num_classes)
    if init is None:
        return create_model(cfg.model, data.num_classes, image_size=data.image_size), {}, None
    state, model = init
    if cfg.init_prune != "none":
        return pruned_init(cfg, data, state)
    return model.train(), state.get("masks") or {}, None


def checked_init(cfg: Config, num_classes: int) -> Optional[Tuple[dict, torch.nn.Module]]:
    """(the --init checkpoint, its model with the raw weights), or None without --init; one ConfigError for what
    build_model refuses: an unknown --model, an unreadable --init, one of another model or class count, weights
    that do not fit their saved shape. Callers that write before training (the lottery) check with this first."""
    if cfg.model not in MODELS:
        raise ConfigError(unknown_model(cfg.model))
    if not cfg.init:
        return None
    try:
        state = load_checkpoint(cfg.init)
    except CheckpointError as err:
        raise ConfigError(f"--init: {err}") from None
    if state["model_name"] != cfg.model:
        raise ConfigError(f"--init {cfg.init} holds a {state['model_name']} model, not --model {cfg.model}; "
                          f"pass --model {state['model_name']}")
    if state["arch"].get("num_classes") != num_classes:
        raise ConfigError(f"--init {cfg.init}: model has {state['arch'].get('num_classes')} classes, "
                          f"the data has {num_classes}")
    try:
        return state, model_from_checkpoint(state, "raw", f"--init {cfg.init}")
    except CheckpointError as err:
        raise ConfigError(str(err)) from None


class Logger:
    """metrics.jsonl + TensorBoard on the main process; nothing elsewhere."""

    def __init__(self, out: str, history, enabled: bool, purge_step: int):
        self.enabled, self.path = enabled, os.path.join(out, "metrics.jsonl")
        self.writer = None
        if enabled:
            with open(self.path + ".tmp", "w") as f:  # rewrite from the checkpoint: no line past it survives
                f.writelines(json_line(h) for h in history)
            os.replace(self.path + ".tmp", self.path)
            self.writer = EventLog(out, purge_step)

    def log(self, record: dict) -> None:
        """Append one evaluation to metrics.jsonl and TensorBoard, both on disk when this returns."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json_line(record))
        self.writer.add_scalars({k: v for k, v in record.items() if k != "step"}, record["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def resume(trainer: Trainer, out: str) -> None:
    """Continue from the newest readable checkpoint in ``out``; refuse one that belongs to another run."""
    try:
        state, path = load_latest(out, trainer.cfg.keep_checkpoints, trainer.rt.device, warn=_warn)
    except CheckpointError as err:
        raise ConfigError(f"{err}; move the folder aside, or use --force-new to start afresh") from None
    if state is None:
        return
    arch, want = state["arch"], dict(trainer.model.arch)
    if (state["model_name"], arch) != (trainer.cfg.model, want):
        raise ConfigError(f"{path} holds a {state['model_name']} model for {arch.get('num_classes')} classes "
                          f"({arch}), this run builds {trainer.cfg.model} for {want.get('num_classes')} classes "
                          f"({want}); use another --out, or --force-new")
    saved, new = state.get("config", {}), trainer.cfg.to_dict()
    diff = config_differences(saved, new)
    if diff:
        raise ConfigError(f"{path} was written by a run with another configuration "
                          f"({_show_differences(saved, new, diff)}); use another --out, or --force-new")
    check_resumed(trainer, state, path)
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{path} does not fit this run ({first_line(err)})") from None
    if trainer.rt.is_main:
        print(f"resuming {out} from step {trainer.step} ({os.path.basename(path)})", file=sys.stderr)


def _progress(cfg: Config, trainer: Trainer):
    if not (cfg.progress and trainer.rt.is_main):
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.steps, initial=trainer.step, dynamic_ncols=True, desc="train")


def train(cfg: Config) -> dict:
    """Train (or resume) the run described by ``cfg``; returns the summary (rank 0's, on every rank).

    Every input (run folder, data, --init, the checkpoint to resume) is checked before the first write, so a
    refused command leaves the disk as it found it.
    """
    rt = make_runtime(cfg)
    try:
        return _train(cfg, rt)
    finally:
        shutdown()


def _train(cfg: Config, rt) -> dict:
    out = check_run_dir(cfg) if rt.is_main else cfg.run_dir
    barrier(rt.world_size)  # no rank reads the folder before rank 0 has checked it
    data = prepare_from_config(cfg)
    torch.manual_seed(cfg.seed)
    model, masks, pruned = build_model(cfg, data)
    trainer = Trainer(cfg, rt, data, model)
    install_compression(trainer, masks)  # slimming penalty, pruning schedule, masks of --init
    torch.manual_seed(cfg.seed * 1000 + rt.rank)  # each rank draws its own augmentations and mixup
    if not cfg.force_new:
        resume(trainer, out)
    if rt.is_main:
        make_run_dir(cfg)
        write_json({**cfg.to_dict(), "provenance": provenance()}, os.path.join(out, "config.json"))
        if pruned and not os.path.exists(os.path.join(out, INIT_PRUNE_RECORD)):
            write_json(pruned, os.path.join(out, INIT_PRUNE_RECORD))
    logger = Logger(out, trainer.history, rt.is_main, trainer.step + 1)
    try:
        _loop(cfg, trainer, logger, out)
    finally:
        logger.close()
    result = summary(trainer.history, cfg.n_eval_last, {"device": f"{rt.device} ({device_name(rt.device)})",
                                                         "precision": rt.precision, "provenance": provenance()})
    if rt.is_main:
        write_json(result, os.path.join(out, "summary.json"))
    return broadcast_from_main(result, rt.world_size)


def _loop(cfg: Config, trainer: Trainer, logger: Logger, out: str) -> None:
    bar = _progress(cfg, trainer)
    guard = LossGuard(trainer.rt.device, trainer.algorithm.terms)
    _keep_step(trainer, guard, out)  # --keep-step 0: the state before the first step
    with torch.autograd.set_detect_anomaly(cfg.detect_anomaly):
        while trainer.step < cfg.steps:
            t0 = time.perf_counter()
            terms, weights = guarded_step(trainer, guard, cfg.detect_anomaly)
            trainer.add_to_window(terms)
            evaluating = trainer.step % cfg.eval_every == 0 or trainer.step == cfg.steps
            if trainer.step % LOG_EVERY == 0 or evaluating:
                guard.check()
                if bar:
                    bar.set_postfix(_progress_fields(terms, weights), refresh=False)
            trainer.window_time += time.perf_counter() - t0
            if bar:
                bar.update(1)
            _keep_step(trainer, guard, out)
            if evaluating:
                seconds = trainer.window_time
                _eval_and_save(trainer, logger, _window_record(trainer, weights), out, seconds)
            if trainer.step < cfg.steps and _stop_agreed(trainer):
                _stop_here(trainer, guard, out, saved=evaluating)
    if bar:
        bar.close()


def _keep_step(trainer: Trainer, guard: LossGuard, out: str) -> None:
    """At step --keep-step, write the full state as RUN/step<K>.pt: the point a lottery ticket rewinds to, with the
    optimizer, schedule, EMA, RNG and sampler positions of that step (last.pt is rotated away, this file is not).
    A run resumed at step K writes it again, with the same state; a run that has passed K keeps the file it has."""
    if trainer.step != trainer.cfg.keep_step:
        return
    guard.check()
    if trainer.rt.is_main:
        check_weights_finite(trainer.model, trainer.ema.model, trainer.step)
    state = trainer.state_dict()  # collective: every rank's RNG
    if trainer.rt.is_main:
        save_step_checkpoint(state, out)


def _progress_fields(terms: dict, weights: dict) -> dict:
    """The progress line: each loss term and each weight of the step just taken."""
    fields = {f"loss_{name}": f"{value.item():.4g}" for name, value in terms.items()}
    fields.update({f"lambda_{name}": f"{value:.3g}" for name, value in weights.items()})
    return fields


def _window_record(trainer: Trainer, weights: dict) -> dict:
    """The evaluation record's training part: each loss term's mean (``loss_<term>``) and weight
    (``lambda_<term>``, for the weighted terms), the algorithm's step statistics averaged over the steps and the
    processes (``pass_rate``, ``threshold``; a per-class one as a list), and the speed since the last evaluation
    (then reset)."""
    steps, seconds = trainer.window_steps, trainer.window_time
    means = (mean_over_ranks(trainer.loss_sums.clone(), trainer.rt.world_size) / steps).tolist()
    stats = {name: (mean_over_ranks(total.clone(), trainer.rt.world_size) / steps).tolist()
             for name, total in sorted(trainer.stat_sums.items())}
    trainer.reset_window()
    losses = {f"loss_{name}": mean for name, mean in zip(trainer.algorithm.terms, means)}
    return {"step": trainer.step, **losses, **{f"lambda_{name}": w for name, w in weights.items()}, **stats,
            "img_per_sec": trainer.images_per_step * steps / max(seconds, 1e-9), "sec_per_step": seconds / steps}


def _stop_agreed(trainer: Trainer) -> bool:
    """Whether to stop now for a requeue. Under torchrun every rank must stop at the same step, so the ranks
    agree every LOG_EVERY steps (one tiny all-reduce) instead of reading their own flags."""
    if trainer.rt.world_size == 1:
        return stop.requested()
    return trainer.step % LOG_EVERY == 0 and any_rank(stop.requested(), trainer.rt.world_size)


def _stop_here(trainer: Trainer, guard: LossGuard, out: str, saved: bool) -> None:
    """Checkpoint at this step (the loss window included, so the next record is the uninterrupted one), stop."""
    if not saved:
        guard.check()
        if trainer.rt.is_main:
            check_weights_finite(trainer.model, trainer.ema.model, trainer.step)
        state = trainer.state_dict()
        if trainer.rt.is_main:
            save_checkpoint(state, out, trainer.cfg.keep_checkpoints)
    raise stop.StopForRequeue(trainer.step)


def _eval_and_save(trainer: Trainer, logger: Logger, record: dict, out: str, train_seconds: float) -> None:
    """Rank 0 evaluates, logs and saves; every rank takes part in gathering the state (RNG of each rank).

    ``elapsed_s`` adds this window's training and evaluation time to the previous record's, so over resumptions it
    counts the run's own compute time (not the time it spent stopped).
    """
    if trainer.rt.is_main:
        check_weights_finite(trainer.model, trainer.ema.model, trainer.step)
        start = time.perf_counter()
        record.update(trainer.evaluate())
        before = trainer.history[-1].get("elapsed_s", 0.0) if trainer.history else 0.0
        record["elapsed_s"] = before + train_seconds + time.perf_counter() - start
        trainer.history.append(record)
        logger.log(record)
    state = trainer.state_dict()
    if trainer.rt.is_main:
        save_checkpoint(state, out, trainer.cfg.keep_checkpoints)


def compile_errors(cfg: Config) -> tuple:
    """torch.compile's own failures, unless --no-compile (evaluated only when an exception reaches it)."""
    if cfg.compile is False:
        return ()
    from torch._dynamo.exc import TorchDynamoException
    return (TorchDynamoException,)


def run(cfg: Config) -> int:
    """Train ``cfg``; input problems exit with 2, a non-finite loss with 1, each as one line; a stop signal
    (``stop.install``) checkpoints at the current step and exits with stop.REQUEUE_EXIT."""
    try:
        result = train(cfg)
    except ConfigError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    except stop.StopForRequeue as err:
        if os.environ.get("RANK", "0") == "0":
            print(err, file=sys.stderr)
        return stop.REQUEUE_EXIT
    except NonFiniteLoss as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 1
    except compile_errors(cfg) as err:
        print(f"train.py: error: torch.compile failed ({first_line(err)}); run with --no-compile", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result))
    return 0


def main(argv=None) -> int:
    return run(parse_args(argv, prog="train.py", description=TRAIN_DESCRIPTION))
