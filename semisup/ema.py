"""Parameter EMA and decoupled weight decay, as the official MixMatch code applies them after each step, and the
warm-up of both running averages (EMA and batch-norm statistics) that makes short runs report what they learned.

The official code starts the EMA (decay 0.999) at the initial weights and the batch-norm running statistics
(momentum 0.001) at mean 0 / variance 1, so after n steps both still hold 0.999^n of their initial values: 74 %
after 300 steps, and a short run logs near-chance accuracy. ``--warm-averages`` (the default) uses TF's
``num_updates`` rule for both: the EMA decays by decay_t = min(decay, (1 + t) / (10 + t)) and batch norm keeps
1 - momentum_t of its statistics with momentum_t = max(momentum, 9 / (10 + t)), the same weights, so the running
statistics describe the same recent networks as the averaged weights; t counts the updates before this one. (The
plain cumulative average, momentum 1 / (t + 1), weighs the first network's statistics as much as the last: after
300 MixMatch steps on CIFAR-10 it logged 35.6 % EMA test accuracy where re-estimated statistics gave 43.4 %,
docs/training.md.) From t = 8,990 on (at decay 0.999 and momentum 0.001) both update exactly as the official
code. After step T of that switch the two EMAs are both weighted averages of the same weights whose weights agree
from T on, so for n > T

    |ema_warm(n) - ema_official(n)| = decay^(n - T) · |avg_warm(T) - avg_official(T)|
                                  <= decay^(n - T) · max over i, j <= T of |w_i - w_j|,

the averages at T being those of the weights up to T under each rule (tests/test_ema.py checks the equality and
the bound). At the paper's 2^20 steps the factor is 0.999^1,039,586 ≈ e^-1040: the reported numbers are the
official ones. The same holds for the batch-norm statistics, with 1 - momentum for decay.
"""
import copy
from typing import List, Optional

import torch
import torch.nn as nn


class EMA:
    """ema ← decay·ema + (1−decay)·param for every parameter; buffers (BN statistics) copied from the model.

    Like TF's ExponentialMovingAverage without ``num_updates``: the average starts at the initial weights, so after
    n updates it equals decay^n·w0 + (1−decay)·Σ_i decay^(n−i)·w_i. No weight decay hides in here.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs(model)

    def _pairs(self, model: nn.Module) -> None:
        self._src_params = [p for p in model.parameters()]
        self._dst_params = [p for p in self.model.parameters()]
        self._src_buffers = [b for b in model.buffers()]
        self._dst_buffers = [b for b in self.model.buffers()]

    def track(self, model: nn.Module) -> None:
        """Pair the parameters and buffers again after both models re-registered them (pruning masks)."""
        self._pairs(model)

    @torch.no_grad()
    def update(self, t: Optional[int] = None) -> None:
        """One EMA step; ``t`` (updates before this one) applies the warm-up rule ``ema_decay_at``."""
        decay = self.decay if t is None else ema_decay_at(t, self.decay)
        torch._foreach_lerp_(self._dst_params, [p.detach() for p in self._src_params], 1.0 - decay)
        if self._dst_buffers:  # a model without batch norm has none, and _foreach_copy_ refuses empty lists
            torch._foreach_copy_(self._dst_buffers, self._src_buffers)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def ema_decay_at(t: int, decay: float) -> float:
    """TF's ExponentialMovingAverage with ``num_updates = t``: min(decay, (1 + t) / (10 + t))."""
    return min(decay, (1.0 + t) / (10.0 + t))


def bn_momentum_at(t: int, momentum: float) -> float:
    """Batch-norm momentum for its update number t (0-based): 1 - ema_decay_at(t), the EMA's warm-up, so the
    statistics average the same recent steps as the weights, 9 / (10 + t), until that falls to ``momentum``."""
    return max(momentum, 9.0 / (10.0 + t))


def set_bn_momenta(layers: List[nn.Module], base: List[float], t: int) -> bool:
    """Set each layer's momentum for update t from its base momentum; returns whether any is still warming up."""
    warming = False
    for layer, momentum in zip(layers, base):
        layer.momentum = bn_momentum_at(t, momentum)
        warming |= layer.momentum != momentum
    return warming


def decay_parameters(model: nn.Module) -> List[torch.Tensor]:
    """Conv and linear weights: the official code decays variables named 'kernel' and nothing else."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def apply_weight_decay(params: List[torch.Tensor], wd: float, lr: float) -> None:
    """w ← w·(1 − wd·lr): decoupled from Adam, applied after its step (0.02·0.002 = 4e-5 per step)."""
    if wd and params:
        torch._foreach_mul_(params, 1.0 - wd * lr)
