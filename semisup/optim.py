"""The optimizer and its learning-rate schedule: Adam at a constant rate (the official MixMatch and baselines), or
SGD with momentum/Nesterov under a step or cosine schedule (network slimming's recipe, FixMatch's).

Weight decay comes in two forms (``--wd-mode``): ``decoupled``, the official code's shrink of conv and linear
weights by (1 - wd·lr) after each step at the step's rate (``ema.apply_weight_decay``, applied by the Trainer), and
``l2``, the optimizer's own ``weight_decay`` on every parameter, as network slimming's ``optim.SGD(...,
weight_decay=1e-4)``. The schedules are torch's own, stepped once per optimizer step.
"""
import torch

from .runtime import adam


def make_optimizer(model: torch.nn.Module, cfg, device) -> torch.optim.Optimizer:
    l2 = cfg.wd if cfg.wd_mode == "l2" else 0.0
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=l2)
    optimizer = adam(model.parameters(), cfg.lr, device)
    for group in optimizer.param_groups:
        group["weight_decay"] = l2
    return optimizer


def make_scheduler(optimizer: torch.optim.Optimizer, cfg) -> torch.optim.lr_scheduler.LRScheduler:
    """constant: the rate never changes; step: x --lr-gamma at each milestone (shares of --steps, network
    slimming's 0.5 and 0.75); cosine: lr·(1 + cos(π·step/steps))/2, annealed to 0 at --steps."""
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.lr_milestone_steps, cfg.lr_gamma)
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The rate of this step (the first parameter group's: semisup uses one)."""
    return optimizer.param_groups[0]["lr"]
