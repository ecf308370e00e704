"""The training loop: one optimizer step at a time, evaluation, logging, checkpoints and resumption.

Hook points, each a list of ``fn(trainer, step)``: ``after_backward`` (gradients complete and unscaled, before the
optimizer step: the slimming penalty goes here), ``after_step`` (after the optimizer step, weight decay and EMA:
pruning masks go here) and ``after_eval``.
"""
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from .augment import augment, to_float
from .compress.masks import load_masked, split_masks
from .config import Config
from .data import InfiniteSampler, SSLData
from .distributed import gather_rng_states, per_rank_batch, restore_rng_state
from .ema import EMA, apply_weight_decay, decay_parameters
from .losses import lambda_u_at, soft_cross_entropy_sum
from .metrics import accuracy, predict
from .mixmatch import frozen_bn_stats, mix_batch, mixmatch_backward
from .runtime import Runtime
from .speed import adam, to_device

HOOKS = ("after_backward", "after_step", "after_eval")


class NonFiniteLoss(RuntimeError):
    """A NaN or infinite loss or weight: the run stops before evaluating or saving it (see guard.py)."""


@dataclass
class Batch:
    """One optimizer step's rows on this process, ready for the forward passes.

    MixMatch: the mixed rows [n_lb labeled; K views of n_lb unlabeled, view after view] and their mixed targets.
    Supervised: the n_lb labeled images and their one-hot targets.
    """
    x: torch.Tensor
    targets: torch.Tensor
    n_lb: int


class Trainer:
    """One process's model, EMA, optimizer and samplers.

    ``--batch-size`` is global: each of the world_size processes draws batch_size / world_size labeled images
    (``self.batch``) per step from its own rank-seeded samplers, and DDP averages the gradients, so one step means
    the same batch size whatever the number of processes.
    """

    def __init__(self, cfg: Config, rt: Runtime, data: SSLData, model: torch.nn.Module):
        self.cfg, self.rt, self.data = cfg, rt, data
        self.model = model.to(rt.device, memory_format=rt.memory_format)
        if cfg.sync_bn and rt.distributed:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.ddp = DistributedDataParallel(self.model) if rt.distributed else None
        self.net = self.ddp or self.model
        if rt.compile:
            self.net = torch.compile(self.net)
        self.optimizer = adam(self.model.parameters(), cfg.lr, rt.device)
        self.scaler = torch.amp.GradScaler(rt.device.type) if rt.amp_dtype == torch.float16 else None
        self.decay_params = decay_parameters(self.model)
        self.batch = per_rank_batch(cfg.batch_size, rt.world_size, cfg.accum_steps)
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
        """DDP all-reduces gradients only after the last micro-batch's backward."""
        return self.ddp.no_sync() if (self.ddp is not None and not last) else nullcontext()

    def next_batch(self) -> Batch:
        """Draw this rank's batch: augment, guess labels and mix (MixMatch), all under the current weights."""
        cfg = self.cfg
        (x_lb,), y_lb = self._views("labeled", 1)
        if cfg.algorithm == "supervised":
            return Batch(x_lb, F.one_hot(y_lb, self.data.num_classes).float(), len(x_lb))
        x_ulb, _ = self._views("unlabeled", cfg.K)
        guess_model = self.ema.model if cfg.ema_guess else self.model
        with self.rt.autocast():
            x_mix, t_mix, _ = mix_batch(guess_model, x_lb, y_lb, x_ulb, self.data.num_classes,
                                        cfg.temperature, cfg.alpha, cfg.mixup)
        return Batch(x_mix, t_mix, len(x_lb))

    def _supervised_backward(self, batch: Batch):
        accum, n = self.cfg.accum_steps, batch.n_lb
        total = torch.zeros((), device=batch.x.device)
        for i, (xm, tm) in enumerate(zip(batch.x.chunk(accum), batch.targets.chunk(accum))):
            with self._sync_context(i == accum - 1):
                with self.rt.autocast(), (frozen_bn_stats(self.net) if i else nullcontext()):
                    logits = self.net(xm)
                loss = soft_cross_entropy_sum(logits, tm) / n
                self._backward(loss)
            total = total + loss.detach()
        return total, torch.zeros_like(total)

    def apply_batch(self, batch: Batch, step: int):
        """Forward and backward ``batch`` in --accum-steps micro-batches, then one optimizer step.

        Everything that counts optimizer steps happens here once: λu(step), the after_backward hooks (slimming),
        gradient clipping, the optimizer and loss-scaler updates, weight decay, EMA and the after_step hooks.
        Returns (loss_x, loss_u, lambda_u) with the losses still on the device.
        """
        cfg = self.cfg
        lam_u = lambda_u_at(step, cfg.lambda_u, cfg.rampup_steps)
        self.optimizer.zero_grad(set_to_none=True)
        if cfg.algorithm == "supervised":
            loss_x, loss_u = self._supervised_backward(batch)
        else:
            loss_x, loss_u = mixmatch_backward(self.net, batch.x, batch.targets, batch.n_lb, cfg.K, lam_u,
                                               cfg.accum_steps, self._backward, self.rt.autocast,
                                               self._sync_context)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        self._run_hooks("after_backward", step)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        apply_weight_decay(self.decay_params, cfg.wd, cfg.lr)
        self.ema.update()
        self._run_hooks("after_step", step)
        return loss_x, loss_u, lam_u

    def train_step(self, step: int):
        """One optimizer step on a fresh batch; returns (loss_x, loss_u, lambda_u)."""
        return self.apply_batch(self.next_batch(), step)

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
        """Everything a resumed run needs. *Collective* under torchrun: every rank must call it (it gathers each
        rank's RNG state); rank 0 saves the result."""
        rng = gather_rng_states(self.rt.device, self.rt.world_size)
        model, masks = split_masks(self.model)
        extra = {"masks": masks} if masks else {}
        return {"config": self.cfg.to_dict(), "model_name": self.cfg.model, "arch": dict(self.model.arch),
                "model": model, "ema": split_masks(self.ema.model)[0], **extra,
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else {},
                "step": self.step, "rng": rng, "samplers": {k: s.state_dict() for k, s in self.samplers.items()},
                "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        restore_rng_state(state["rng"], self.rt.rank, self.rt.world_size, self.rt.device)
        masks = state.get("masks", {})  # pruning masks: re-applied to both models, see compress/masks.py
        load_masked(self.model, state["model"], masks)
        load_masked(self.ema.model, state["ema"], masks)
        self.ema.track(self.model)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for name, sampler in self.samplers.items():
            sampler.load_state_dict(state["samplers"][name])
        self.step = int(state["step"])
        self.history = list(state["history"])

