"""The optimizer and its learning-rate schedule: Adam at a constant rate (the official MixMatch and baselines), or
SGD with momentum/Nesterov under a step or cosine schedule (network slimming's recipe, FixMatch's).

Weight decay comes in three forms (``--wd-mode``): ``decoupled``, the official MixMatch code's shrink of conv and
linear weights by (1 - wd·lr) after each step at the step's rate (``ema.apply_weight_decay``, applied by the
Trainer); ``l2``, the optimizer's own ``weight_decay`` on every parameter, as network slimming's ``optim.SGD(...,
weight_decay=1e-4)``; and ``l2-kernels``, the optimizer's ``weight_decay`` on conv and linear weights only, which is
FixMatch's ``wd·Σ‖W‖²/2`` over the kernels added to the loss (gradient ``wd·W``; biases and batch norm untouched).
The schedules are torch's own, stepped once per optimizer step.
"""
import math
from functools import partial

import torch

from .ema import decay_parameters
from .runtime import adam


def param_groups(model: torch.nn.Module, cfg) -> list:
    """One group for every parameter, or under l2-kernels the conv/linear weights (decayed) and the rest (not)."""
    if cfg.wd_mode == "l2-kernels":
        kernels = {id(p) for p in decay_parameters(model)}
        return [{"params": [p for p in model.parameters() if id(p) in kernels], "weight_decay": cfg.wd},
                {"params": [p for p in model.parameters() if id(p) not in kernels], "weight_decay": 0.0}]
    return [{"params": list(model.parameters()), "weight_decay": cfg.wd if cfg.wd_mode == "l2" else 0.0}]


def make_optimizer(model: torch.nn.Module, cfg, device) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return adam(groups, cfg.lr, device)


def cosine_7_16(step: int, steps: int) -> float:
    """FixMatch's rate factor cos(7π·k/(16K)) at step k of K: 1 at the start, cos(7π/16) = 0.195 at the end."""
    return math.cos(7 * math.pi * min(step, steps) / (16 * steps))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg) -> torch.optim.lr_scheduler.LRScheduler:
    """constant: the rate never changes; step: x --lr-gamma at each milestone (shares of --steps, network
    slimming's 0.5 and 0.75); cosine: lr·(1 + cos(π·step/steps))/2, annealed to 0 at --steps; cosine-7/16:
    FixMatch's lr·cos(7π·step/(16·steps))."""
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.lr_milestone_steps, cfg.lr_gamma)
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    if cfg.lr_schedule == "cosine-7/16":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(cosine_7_16, steps=cfg.steps))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The rate of this step (the first parameter group's: semisup uses one)."""
    return optimizer.param_groups[0]["lr"]
