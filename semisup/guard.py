"""Stop on a non-finite loss, name the step and the loss terms, and never save non-finite weights.

Reading a loss back from a GPU every step would stall the pipeline, so ``LossGuard.observe`` only queues a few
tiny device operations that remember the first bad step; ``check`` reads that back (every few steps and before
every save), so the reported step is exact although the checks are sparse.
"""
import re
from typing import Dict, Iterable, Sequence, Tuple

import torch

from .config import first_line

HINT = "try --detect-anomaly, a lower --lr, or --amp none"
_ANOMALY = re.compile(r"returned nan values")


class NonFiniteLoss(RuntimeError):
    """A NaN or infinite loss or weight: the run stops before evaluating or saving it."""


class LossGuard:
    """Remembers, on the device, the first step one of whose loss terms (by name) was NaN or infinite."""

    def __init__(self, device, terms: Sequence[str] = ("x", "u")):
        self.terms = tuple(terms)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_losses = torch.zeros(len(self.terms), device=device)

    def observe(self, step: int, terms: Dict[str, torch.Tensor]) -> None:
        """Record ``step`` if its losses are not finite and no earlier step was; never waits for the device."""
        losses = torch.stack([terms[name].detach().float() for name in self.terms])
        first = torch.logical_and(~torch.isfinite(losses).all(), self.bad_step < 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_losses = torch.where(first, losses, self.bad_losses)

    def check(self) -> None:
        """Raise NonFiniteLoss naming the first bad step and every loss term (one device sync)."""
        step = int(self.bad_step)
        if step >= 0:
            values = ", ".join(f"loss_{name}={value}" for name, value in zip(self.terms, self.bad_losses.tolist()))
            raise NonFiniteLoss(f"non-finite loss at step {step}: {values}; stopped "
                                f"before saving it, the checkpoints in the run folder are finite ({HINT})")


def first_non_finite(named: Iterable[Tuple[str, torch.Tensor]]) -> str:
    """Name of the first floating-point tensor holding a NaN or an infinity, or '' when all are finite."""
    named = [(name, t) for name, t in named if t.is_floating_point()]
    if not named:
        return ""
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()
    return next((name for (name, _), ok in zip(named, finite) if not ok), "")


def check_weights_finite(model: torch.nn.Module, ema_model: torch.nn.Module, step: int) -> None:
    """Refuse to evaluate or save a model (or its EMA) whose weights or buffers are not all finite."""
    for prefix, module in (("model", model), ("ema", ema_model)):
        bad = first_non_finite(module.state_dict().items())
        if bad:
            raise NonFiniteLoss(f"non-finite weights in {prefix}.{bad} at step {step}; stopped before saving "
                                f"them, the checkpoints in the run folder are finite ({HINT})")


def guarded_step(trainer, guard: LossGuard, detect_anomaly: bool):
    """``trainer.train_step`` whose losses feed ``guard``; an anomaly-mode NaN becomes one NonFiniteLoss line."""
    step = trainer.step + 1  # the step being taken, counted as in metrics.jsonl
    try:
        terms, weights = trainer.train_step()
    except RuntimeError as err:
        if detect_anomaly and _ANOMALY.search(str(err)):
            first = first_line(err)
            raise NonFiniteLoss(f"autograd anomaly at step {step}: {first} (the forward call that produced "
                                f"it is printed above)") from None
        raise
    guard.observe(step, terms)
    return terms, weights
