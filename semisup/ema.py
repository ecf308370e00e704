"""Parameter EMA and decoupled weight decay, as the official MixMatch code applies them after each step."""
import copy
from typing import List

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
    def update(self) -> None:
        torch._foreach_lerp_(self._dst_params, [p.detach() for p in self._src_params], 1.0 - self.decay)
        if self._dst_buffers:  # a model without batch norm has none, and _foreach_copy_ refuses empty lists
            torch._foreach_copy_(self._dst_buffers, self._src_buffers)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def decay_parameters(model: nn.Module) -> List[torch.Tensor]:
    """Conv and linear weights: the official code decays variables named 'kernel' and nothing else."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def apply_weight_decay(params: List[torch.Tensor], wd: float, lr: float) -> None:
    """w ← w·(1 − wd·lr): decoupled from Adam, applied after its step (0.02·0.002 = 4e-5 per step)."""
    if wd and params:
        torch._foreach_mul_(params, 1.0 - wd * lr)
