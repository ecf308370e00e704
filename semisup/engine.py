"""The training loop: one optimizer step at a time, evaluation, logging, checkpoints and resumption.

Hook points, each a list of ``fn(trainer, step)``: ``after_backward`` (gradients complete and unscaled, before the
optimizer step: the slimming penalty goes here), ``after_step`` (after the optimizer step, weight decay and EMA:
pruning masks go here) and ``after_eval``.
"""
import math
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from .augment import augment, to_float
from .config import Config
from .data import InfiniteSampler, SSLData
from .ema import EMA, apply_weight_decay, decay_parameters
from .losses import lambda_u_at, soft_cross_entropy_sum
from .metrics import accuracy, predict
from .mixmatch import mix_batch, mixmatch_backward
from .runtime import Runtime
from .speed import to_device

HOOKS = ("after_backward", "after_step", "after_eval")


class NonFiniteLoss(RuntimeError):
    pass


class Trainer:
    def __init__(self, cfg: Config, rt: Runtime, data: SSLData, model: torch.nn.Module):
        self.cfg, self.rt, self.data = cfg, rt, data
        self.model = model.to(rt.device, memory_format=rt.memory_format)
        if cfg.sync_bn and rt.distributed:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.net = DistributedDataParallel(self.model) if rt.distributed else self.model
        if rt.compile:
            self.net = torch.compile(self.net)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.scaler = torch.amp.GradScaler(rt.device.type) if rt.amp_dtype == torch.float16 else None
        self.decay_params = decay_parameters(self.model)
        self.batch = cfg.batch_size // rt.world_size if rt.distributed else cfg.batch_size
        self.samplers = {"labeled": InfiniteSampler(len(data.labeled), self.batch, cfg.seed, rt.rank)}
        if cfg.algorithm == "mixmatch":
            self.samplers["unlabeled"] = InfiniteSampler(len(data.unlabeled), self.batch, cfg.seed + 1, rt.rank)
        self.device_data = {"labeled": data.labeled.to(rt.device), "unlabeled": data.unlabeled.to(rt.device)}
        self.step = 0
        self.history = []
        self.hooks = {name: [] for name in HOOKS}

    # ----- one optimizer step -------------------------------------------------------------------------
    def _views(self, name: str, count: int):
        images = self.device_data[name]
        idx = to_device(self.samplers[name].next(), self.rt.device)
        raw = images.images[idx]
        views = [to_float(augment(raw), self.rt.memory_format) for _ in range(count)]
        return views, images.labels[idx]

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def _sync_context(self, last: bool):
        return self.net.no_sync() if (self.rt.distributed and not last) else nullcontext()

    def _supervised_backward(self, x_lb, y_lb):
        accum, n = self.cfg.accum_steps, len(x_lb)
        total = torch.zeros((), device=x_lb.device)
        targets = F.one_hot(y_lb, self.data.num_classes).float()
        for xm, tm, i in zip(x_lb.chunk(accum), targets.chunk(accum), range(accum)):
            with self._sync_context(i == accum - 1):
                with self.rt.autocast():
                    logits = self.net(xm)
                loss = soft_cross_entropy_sum(logits, tm) / n
                self._backward(loss)
            total = total + loss.detach()
        return total, torch.zeros_like(total)

    def train_step(self, step: int):
        """One optimizer step; returns (loss_x, loss_u, lambda_u) with the losses still on the device."""
        cfg = self.cfg
        lam_u = lambda_u_at(step, cfg.lambda_u, cfg.rampup_steps)
        self.optimizer.zero_grad(set_to_none=True)
        (x_lb,), y_lb = self._views("labeled", 1)
        if cfg.algorithm == "supervised":
            loss_x, loss_u = self._supervised_backward(x_lb, y_lb)
        else:
            x_ulb, _ = self._views("unlabeled", cfg.K)
            guess_model = self.ema.model if cfg.ema_guess else self.model
            with self.rt.autocast():
                x_mix, t_mix, _ = mix_batch(guess_model, x_lb, y_lb, x_ulb, self.data.num_classes,
                                            cfg.temperature, cfg.alpha, cfg.mixup, cfg.accum_steps)
            loss_x, loss_u = mixmatch_backward(self.net, x_mix, t_mix, len(x_lb), cfg.K, lam_u, cfg.accum_steps,
                                               self._backward, self.rt.autocast, self._sync_context)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        self._run_hooks("after_backward", step)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        apply_weight_decay(self.decay_params, cfg.wd, cfg.lr)
        self.ema.update()
        self._run_hooks("after_step", step)
        return loss_x, loss_u, lam_u

    def _run_hooks(self, name: str, step: int) -> None:
        for hook in self.hooks[name]:
            hook(self, step)

    # ----- evaluation ---------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Accuracy (percent) of the raw and EMA models on the validation and test sets, and images/s."""
        out, n_images, start = {}, 0, time.perf_counter()
        for split in ("valid", "test"):
            ds = getattr(self.data, split)
            for suffix, model in (("", self.model), ("_ema", self.ema.model)):
                logits = predict(model, ds.images, self.cfg.eval_batch_size, self.rt.device,
                                 self.rt.memory_format, self.rt.autocast())
                out[f"{split}_acc{suffix}"] = accuracy(logits, ds.labels) if len(ds) else float("nan")
                n_images += len(ds)
        out["eval_img_per_sec"] = n_images / max(time.perf_counter() - start, 1e-9)
        return out

    # ----- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"config": self.cfg.to_dict(), "model_name": self.cfg.model, "arch": dict(self.model.arch),
                "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else {},
                "step": self.step, "rng": rng, "samplers": {k: s.state_dict() for k, s in self.samplers.items()},
                "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for name, sampler in self.samplers.items():
            sampler.load_state_dict(state["samplers"][name])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])
        self.history = list(state["history"])


def check_finite(step: int, loss_x: float, loss_u: float) -> None:
    if not (math.isfinite(loss_x) and math.isfinite(loss_u)):
        raise NonFiniteLoss(f"non-finite loss by step {step}: loss_x={loss_x}, loss_u={loss_u}; "
                            f"nothing was saved after the last finite evaluation (try --detect-anomaly, "
                            f"a lower --lr, or --amp none)")
