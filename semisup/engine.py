"""The Trainer: one optimizer step at a time, evaluation, and the state a resumed run needs.

An algorithm (``semisup/algorithms/``, one file each; the contract is ``algorithms/base.py``) supplies the step's
batch, the named loss terms of one micro-batch and their weights; the Trainer owns everything around them, once for
every algorithm: gradient accumulation, DDP's ``no_sync``, loss scaling, freezing the batch-norm statistics after
the first micro-batch, the hooks, clipping, the optimizer and its schedule, weight decay and EMA. Logging and
checkpoints are the runner's (``runner.py``).

Hook points, each a list of ``fn(trainer, step)`` with the 0-based step being taken: ``after_backward`` (gradients
complete and unscaled, before the optimizer step: the slimming penalty goes here) and ``after_step`` (after the
optimizer step, weight decay and EMA: pruning masks go here).
"""
import time
from contextlib import nullcontext
from typing import Callable, Dict, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel

from .algorithms.base import Models, check_data, labeled_view, make_algorithm, total_loss, unlabeled_pool
from .augment import draw_views, to_uint8
from .config import Config
from .data import InfiniteSampler, SSLData
from .distributed import gather_per_rank, gather_rng_states, per_rank_batch, restore_rng_state
from .ema import EMA, apply_weight_decay, decay_parameters, set_bn_momenta
from .masks import load_masked, split_masks
from .models import batch_norms, frozen_bn_stats
from .optim import current_lr, make_optimizer, make_scheduler
from .predict import accuracy, predict
from .runtime import Runtime, to_device

HOOKS = ("after_backward", "after_step")
Hook = Callable[["Trainer", int], None]
Terms = Dict[str, torch.Tensor]


class Trainer:
    """One process's model, EMA, optimizer, samplers and step counter.

    ``--batch-size`` is global: each of the world_size processes draws batch_size / world_size labeled images
    (``self.batch``) per step from its own rank-seeded samplers, and DDP averages the gradients, so one step means
    the same batch size whatever the number of processes.
    """

    def __init__(self, cfg: Config, rt: Runtime, data: SSLData, model: torch.nn.Module):
        self.cfg, self.rt, self.data = cfg, rt, data
        self.algorithm = make_algorithm(cfg, data.num_classes)
        check_data(data, self.algorithm)
        self.model = self.algorithm.prepare_model(model).to(rt.device, memory_format=rt.memory_format)
        if cfg.sync_bn and rt.distributed:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.ddp = DistributedDataParallel(self.model) if rt.distributed else None
        self.eager_net = self.ddp or self.model
        self.net = torch.compile(self.eager_net) if rt.compile else self.eager_net
        self.bn_layers = [m for m in batch_norms(self.model) if m.track_running_stats]
        self.bn_momenta = [m.momentum for m in self.bn_layers]
        self.optimizer = make_optimizer(self.model, cfg, rt.device)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler(rt.device.type) if rt.amp_dtype == torch.float16 else None
        self.decay_params = decay_parameters(self.model)
        self.batch = per_rank_batch(cfg.batch_size, rt.world_size, cfg.accum_steps)
        unlabeled = unlabeled_pool(data, self.algorithm)
        self.algorithm.bind_unlabeled(len(unlabeled))
        self.samplers = {"labeled": InfiniteSampler(len(data.labeled), self.batch, cfg.seed, rt.rank)}
        if self.algorithm.unlabeled_views or self.algorithm.strong_views:
            self.samplers["unlabeled"] = InfiniteSampler(len(unlabeled), self.batch * self.algorithm.uratio,
                                                         cfg.seed + 1, rt.rank)
        self.device_data = {"labeled": data.labeled.to(rt.device), "unlabeled": unlabeled.to(rt.device)}
        self.step = 0  # completed optimizer steps
        self._bn_updates = None  # read from the batch norms' counter when first needed (bn_updates)
        self.history = []
        self.reset_window()
        self.hooks = {name: [] for name in HOOKS}
        self.extra_state = {}  # entries the installed compression keeps in every checkpoint (the ratio file's ratios)

    @property
    def images_per_step(self) -> int:
        """Training images one step draws over all processes (labeled, plus every unlabeled view)."""
        alg = self.algorithm
        return self.cfg.batch_size * (1 + alg.uratio * (alg.unlabeled_views + alg.strong_views))

    def reset_window(self) -> None:
        """Start a new logging window: the loss sums (kept on the device) and the time since the last evaluation."""
        self.loss_sums = torch.zeros(len(self.algorithm.terms), device=self.rt.device)
        self.stat_sums = {}
        self.window_steps, self.window_time = 0, 0.0

    def add_to_window(self, terms: Terms) -> None:
        """The step's loss terms and the algorithm's step statistics, summed over the window."""
        self.loss_sums += torch.stack([terms[name] for name in self.algorithm.terms])
        for name, value in self.algorithm.step_stats().items():
            value = value.detach().float().to(self.rt.device)
            self.stat_sums[name] = self.stat_sums[name] + value if name in self.stat_sums else value
        self.window_steps += 1

    def add_hook(self, name: str, fn: Hook) -> None:
        if name not in self.hooks:
            raise ValueError(f"unknown hook {name!r}; the hooks are {', '.join(HOOKS)}")
        self.hooks[name].append(fn)

    def _run_hooks(self, name: str, step: int) -> None:
        for hook in self.hooks[name]:
            hook(self, step)

    # ----- one optimizer step -------------------------------------------------------------------------
    def _views(self, name: str, count: int, strong: int = 0):
        """``count`` weakly and then ``strong`` strongly augmented float views of the next images of sampler
        ``name``, their labels, and the images' dataset indices."""
        idx = to_device(self.samplers[name].next(), self.rt.device)
        views, labels = draw_views(self.device_data[name], idx, count, self.rt.memory_format, pad=self.data.pad,
                                   flip=self.data.flip, strong=self.algorithm.strong, strong_count=strong)
        return views, labels, idx

    def next_batch(self):
        """Draw this rank's batch (augment, then the algorithm's part: guesses, teachers, mixup), all under the
        current weights. An algorithm with strong views first sees the labeled images as uint8 (CTAugment's probes
        learn from them), then (ReMixMatch) may train on their strong augmentation."""
        alg, models = self.algorithm, Models(self.model, self.ema.model)
        (x_lb,), y_lb, _ = self._views("labeled", 1)
        x_ulb, index = [], None
        if alg.strong_views:
            raw_lb = to_uint8(x_lb)
            alg.observe_labeled(raw_lb, y_lb, models)
            x_lb = labeled_view(alg, x_lb, raw_lb, self.rt.memory_format)
            x_ulb, _, index = self._views("unlabeled", alg.unlabeled_views, alg.strong_views)
        elif alg.unlabeled_views:
            x_ulb, _, index = self._views("unlabeled", alg.unlabeled_views)
        alg.start_step(self.step, index)
        with self.rt.autocast():
            return alg.batch(x_lb, y_lb, x_ulb, models)

    def _sync_context(self, last: bool):
        """DDP all-reduces gradients only after the last micro-batch's backward."""
        return self.ddp.no_sync() if (self.ddp is not None and not last) else nullcontext()

    def _step_net(self) -> torch.nn.Module:
        """The network for this step's passes. With --warm-averages the batch-norm momenta are set for this step's
        update (the running statistics have seen ``step`` updates: one per optimizer step); while they still change
        from step to step the eager network runs, since a compiled graph would be rebuilt for every new value."""
        if not (self.cfg.warm_averages and self.bn_layers):
            return self.net
        warming = set_bn_momenta(self.bn_layers, self.bn_momenta, self.bn_updates())
        return self.eager_net if warming else self.net

    def bn_updates(self) -> int:
        """How many times the running statistics have been updated: their own counter, kept in the checkpoint (a
        model started from --init continues its count)."""
        if self._bn_updates is None:
            self._bn_updates = int(self.bn_layers[0].num_batches_tracked)
        return self._bn_updates

    def accumulate(self, batch, weights: Dict[str, float]) -> Terms:
        """Forward and backward ``batch`` in --accum-steps micro-batches; returns each loss term summed over them.

        The algorithm divides each micro-batch's terms by the full batch's row counts, so the summed gradients
        are the full batch's. Only the first micro-batch updates the batch-norm running statistics, so they
        advance once per optimizer step whatever --accum-steps is.
        """
        count, net = self.cfg.accum_steps, self._step_net()
        totals = {}
        for i in range(count):
            micro = self.algorithm.micro_batch(batch, i, count)
            with self._sync_context(i == count - 1):
                with frozen_bn_stats(net) if i else nullcontext():
                    terms = self.algorithm.loss(net, micro, self.rt.autocast)
                loss = total_loss(terms, weights)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            for name, value in terms.items():
                totals[name] = totals[name] + value.detach() if name in totals else value.detach()
        if self._bn_updates is not None and self.model.training:
            self._bn_updates += 1
        return totals

    def apply_batch(self, batch) -> Tuple[Terms, Dict[str, float]]:
        """Forward and backward ``batch``, then one optimizer step; advances ``self.step``.

        Everything that counts optimizer steps happens here once: the terms' weights (ramps), the after_backward
        hooks (slimming), gradient clipping, the optimizer, its schedule and the loss-scaler updates, weight
        decay, EMA and the after_step hooks. Returns the loss terms (still on the device) and their weights.
        """
        cfg, step = self.cfg, self.step
        weights = self.algorithm.weights(step * cfg.batch_size)
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.accumulate(batch, weights)
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
        if cfg.wd_mode == "decoupled":
            apply_weight_decay(self.decay_params, cfg.wd, current_lr(self.optimizer))
        self.scheduler.step()
        self.ema.update(step if cfg.warm_averages else None)
        self._run_hooks("after_step", step)
        self.step += 1
        return terms, weights

    def train_step(self) -> Tuple[Terms, Dict[str, float]]:
        """One optimizer step on a fresh batch; returns its loss terms and their weights."""
        return self.apply_batch(self.next_batch())

    # ----- evaluation ---------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Accuracy (percent) of the raw and EMA models on the validation and test sets, and images/s.

        ``predict`` and ``accuracy`` are evaluate.py's too (fp32 classifier head, one tie rule), so a logged
        accuracy counts the predictions that evaluate.py's top-1 and confusion matrix count."""
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
        # The loss sums since the last evaluation, per rank: a run stopped between evaluations logs the same
        # next record after resuming as it would have without the stop.
        window = gather_per_rank({"sums": self.loss_sums.detach().cpu(), "steps": self.window_steps,
                                  "time": self.window_time,
                                  "stats": {k: v.cpu() for k, v in self.stat_sums.items()}}, self.rt.world_size)
        model, masks = split_masks(self.model)
        extra = {"masks": masks} if masks else {}
        return {"config": self.cfg.to_dict(), "model_name": self.cfg.model, "arch": dict(self.model.arch),
                "model": model, "ema": split_masks(self.ema.model)[0], **extra,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "algorithm": self.algorithm.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else {},
                "step": self.step, "rng": rng, "samplers": {k: s.state_dict() for k, s in self.samplers.items()},
                "history": list(self.history), "window": window, **self.extra_state}

    def load_state_dict(self, state: dict) -> None:
        restore_rng_state(state["rng"], self.rt.rank, self.rt.world_size, self.rt.device)
        masks = state.get("masks", {})  # pruning masks: re-applied to both models, see masks.py
        load_masked(self.model, state["model"], masks)
        load_masked(self.ema.model, state["ema"], masks)
        self.ema.track(self.model)
        self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:  # absent from checkpoints saved before the schedules (constant rate)
            self.scheduler.load_state_dict(state["scheduler"])
        self.algorithm.load_state_dict(state.get("algorithm", {}))
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for name, sampler in self.samplers.items():
            sampler.load_state_dict(state["samplers"][name])
        self.step = int(state["step"])
        self._bn_updates = None
        self.history = list(state["history"])
        self.reset_window()
        window = state.get("window")  # absent from checkpoints written at evaluations before it was saved
        if window and len(window) == self.rt.world_size:
            mine = window[self.rt.rank]
            self.loss_sums = mine["sums"].to(self.rt.device, torch.float32)
            self.stat_sums = {k: v.to(self.rt.device) for k, v in mine.get("stats", {}).items()}
            self.window_steps, self.window_time = int(mine["steps"]), float(mine["time"])
