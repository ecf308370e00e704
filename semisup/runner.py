"""``train.py``'s body: set up a run folder, resume it if it exists, train, log, evaluate and summarise.

Run folder: config.json, metrics.jsonl (one line per evaluation), TensorBoard events, last.pt (+ the previous
checkpoint), summary.json at the end. Rerunning the same command resumes exactly where the last checkpoint left off.
"""
import json
import os
import statistics
import sys
import time

import torch

from .checkpoint import CheckpointError, load_checkpoint, load_latest, save_checkpoint
from .compress.training import install as install_compression
from .config import RESUMABLE_FIELDS, Config, ConfigError, parse_args
from .data import prepare_data
from .engine import NonFiniteLoss, Trainer, check_finite
from .models import create_model, model_from_arch
from .runtime import make_runtime

LOG_EVERY = 10  # steps between progress-bar updates (each one reads the losses back from the device)


def write_json(obj, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def config_differences(old: dict, new: dict):
    keys = sorted((set(old) | set(new)) - RESUMABLE_FIELDS)
    return [k for k in keys if old.get(k) != new.get(k)]


def prepare_run_dir(cfg: Config) -> str:
    """Create the run folder, or check that the one there holds this same experiment."""
    out = cfg.run_dir
    path = os.path.join(out, "config.json")
    if os.path.exists(path) and not cfg.force_new:
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path} is unreadable ({err}); use another --out or --force-new") from None
        diff = config_differences(old, cfg.to_dict())
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {cfg.to_dict().get(k)!r}" for k in diff[:4])
            raise ConfigError(f"{out} holds a run with another configuration ({shown}); "
                              f"use another --out, or --force-new to move that run aside and start afresh")
    elif os.path.exists(out) and cfg.force_new and os.listdir(out):
        aside = f"{out.rstrip('/')}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(out, aside)
        print(f"moved the previous run in {out} to {aside}", file=sys.stderr)
    os.makedirs(out, exist_ok=True)
    return out


def build_model(cfg: Config, num_classes: int) -> torch.nn.Module:
    if not cfg.init:
        return create_model(cfg.model, num_classes)
    try:
        state = load_checkpoint(cfg.init)
    except CheckpointError as err:
        raise ConfigError(f"--init: {err}") from None
    if state["arch"].get("num_classes") != num_classes:
        raise ConfigError(f"--init {cfg.init}: model has {state['arch'].get('num_classes')} classes, "
                          f"the data has {num_classes}")
    model = model_from_arch(state["model_name"], state["arch"])
    model.load_state_dict(state["model"])
    return model


def summary(history, n_last: int) -> dict:
    accs = [h["test_acc_ema"] for h in history][-n_last:]
    med = statistics.median(accs) if accs else float("nan")
    return {"median_test_acc_ema_last": med, "error": 100.0 - med, "n_evals_used": len(accs),
            "step": history[-1]["step"] if history else 0}


class Logger:
    """metrics.jsonl + TensorBoard on the main process; nothing elsewhere."""

    def __init__(self, out: str, history, enabled: bool, purge_step: int):
        self.enabled, self.path = enabled, os.path.join(out, "metrics.jsonl")
        self.writer = None
        if enabled:
            from tensorboardX import SummaryWriter
            with open(self.path + ".tmp", "w") as f:  # rewrite from the checkpoint: no line past it survives
                f.writelines(json.dumps(h) + "\n" for h in history)
            os.replace(self.path + ".tmp", self.path)
            self.writer = SummaryWriter(out, purge_step=purge_step or None)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step":
                self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def resume(trainer: Trainer, out: str, keep: int) -> None:
    state, path = load_latest(out, keep, map_location=trainer.rt.device)
    if state is None:
        return
    if state.get("arch") != trainer.model.arch:
        raise ConfigError(f"{path} holds a model of another shape than this configuration builds")
    trainer.load_state_dict(state)
    if trainer.rt.is_main:
        print(f"resuming {out} from step {trainer.step} ({os.path.basename(path)})", file=sys.stderr)


def _progress(cfg: Config, trainer: Trainer):
    if not (cfg.progress and trainer.rt.is_main):
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.steps, initial=trainer.step, dynamic_ncols=True, desc="train")


def train(cfg: Config) -> dict:
    """Train (or resume) the run described by ``cfg``; returns the summary."""
    rt = make_runtime(cfg)
    out = prepare_run_dir(cfg) if rt.is_main else cfg.run_dir
    data = prepare_data(cfg.data_dir, cfg.n_labeled, cfg.n_valid, cfg.seed, cfg.download)
    torch.manual_seed(cfg.seed)
    trainer = Trainer(cfg, rt, data, build_model(cfg, data.num_classes))
    install_compression(trainer)  # slimming penalty, pruning schedule, masks of --init
    torch.manual_seed(cfg.seed * 1000 + rt.rank)  # each rank draws its own augmentations and mixup
    resume(trainer, out, cfg.keep_checkpoints)
    if rt.is_main:
        write_json(cfg.to_dict(), os.path.join(out, "config.json"))
    logger = Logger(out, trainer.history, rt.is_main, trainer.step + 1)
    try:
        _loop(cfg, trainer, logger, out)
    finally:
        logger.close()
    result = summary(trainer.history, cfg.n_eval_last)
    if rt.is_main:
        write_json(result, os.path.join(out, "summary.json"))
    return result


def _loop(cfg: Config, trainer: Trainer, logger: Logger, out: str) -> None:
    bar = _progress(cfg, trainer)
    img_per_step = cfg.batch_size * (1 + (cfg.K if cfg.algorithm == "mixmatch" else 0))
    sums = torch.zeros(2, device=trainer.rt.device)
    window_steps, window_time = 0, 0.0
    with torch.autograd.set_detect_anomaly(cfg.detect_anomaly):
        while trainer.step < cfg.steps:
            t0 = time.perf_counter()
            loss_x, loss_u, lam_u = trainer.train_step(trainer.step)
            sums += torch.stack([loss_x, loss_u])
            trainer.step += 1
            window_steps += 1
            if trainer.step % LOG_EVERY == 0 or trainer.step % cfg.eval_every == 0 or trainer.step == cfg.steps:
                mean_x, mean_u = (sums / window_steps).tolist()
                check_finite(trainer.step, mean_x, mean_u)
                if bar:
                    bar.set_postfix(loss_x=f"{loss_x.item():.3f}", loss_u=f"{loss_u.item():.4f}",
                                    lambda_u=f"{lam_u:.1f}", refresh=False)
            window_time += time.perf_counter() - t0
            if bar:
                bar.update(1)
            if trainer.step % cfg.eval_every == 0 or trainer.step == cfg.steps:
                record = {"step": trainer.step, "loss_x": mean_x, "loss_u": mean_u, "lambda_u": lam_u,
                          "img_per_sec": img_per_step * window_steps / max(window_time, 1e-9),
                          "sec_per_step": window_time / window_steps}
                _eval_and_save(trainer, logger, record, out)
                sums.zero_()
                window_steps, window_time = 0, 0.0
    if bar:
        bar.close()


def _eval_and_save(trainer: Trainer, logger: Logger, record: dict, out: str) -> None:
    if trainer.rt.is_main:
        record.update(trainer.evaluate())
        trainer.history.append(record)
        logger.log(record)
        save_checkpoint(trainer.state_dict(), out, trainer.cfg.keep_checkpoints)
    trainer._run_hooks("after_eval", trainer.step)


def main(argv=None) -> int:
    cfg = parse_args(argv, prog="train.py", description="Train MixMatch (or the supervised baseline) on CIFAR-10.")
    try:
        result = train(cfg)
    except ConfigError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLoss as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
