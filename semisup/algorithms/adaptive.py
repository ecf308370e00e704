"""FixMatch's substrate with a threshold (or weight) the algorithm learns: what FlexMatch, FreeMatch, SoftMatch,
AdaMatch and Dash share.

Each of them reads the step's predictions once — the labeled rows' and the weak views' softmax, detached, over all
μB unlabeled rows of the joint train-mode pass, as USB's ``train_step`` does — updates its state (counts, EMAs),
and returns each unlabeled row's target (a class, or Dash's soft target) and its weight (a 0/1 mask, or SoftMatch's
truncated Gaussian). The unsupervised term is then the official one, Σ w·CE(target, strong logits) / μB.

Once per optimizer step, from the whole step: the curriculum advances once per step whatever ``--accum-steps``
is. With one micro-batch the predictions are the joint pass's own (the official code). With several, ``batch``
takes one extra no-grad pass over the whole step's labeled and weak rows (training-mode batch norm on their own
statistics, the running ones untouched), so the thresholds are those of the full batch; only batch norm's
per-micro-batch statistics differ from one large batch, as for every algorithm.

Across processes: the predictions and dataset indices of every rank are gathered (in rank order) before the
update, so the state is identical on every rank and equals that of one process with the same global batch
(FlexMatch's marks included, which the official codebases keep per process).
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Dict, Optional

import torch
import torch.nn as nn

from ..distributed import gather_rows
from .base import Models, batch_statistics
from .fixmatch import FixMatch, UnlabeledRows, joint_logits, supervised_loss
from .strong import rank, world_size
from .thresholds import soft_cross_entropy


@dataclass
class StepLogits:
    """The step's logits (float32, detached) over every rank's rows in rank order, and the unlabeled rows'
    dataset indices (None where the caller has none, e.g. a pruning criterion's batches)."""
    labeled: torch.Tensor
    y: torch.Tensor
    weak: torch.Tensor
    strong: Optional[torch.Tensor]
    index: Optional[torch.Tensor]


@dataclass
class Selection:
    """Each unlabeled row's target (class indices, or soft targets [n, C]) and weight; ``extra`` holds what a
    further term needs for the whole step (FreeMatch's fairness gradient)."""
    targets: torch.Tensor
    weights: torch.Tensor
    extra: Dict[str, torch.Tensor] = field(default_factory=dict)

    def rows(self, part: slice) -> "Selection":
        return Selection(self.targets[part], self.weights[part], self.extra)


@dataclass
class AdaptiveRows(UnlabeledRows):
    """FixMatch's rows, the unlabeled rows' dataset indices, and (under accumulation) the step's selection."""
    index: Optional[torch.Tensor] = None
    selection: Optional[Selection] = None

    def part(self, index: int, count: int) -> "AdaptiveRows":
        base = super().part(index, count)
        nu = len(self.weak) // count
        unl = slice(index * nu, (index + 1) * nu)
        return AdaptiveRows(**vars(base), index=None if self.index is None else self.index[unl],
                            selection=None if self.selection is None else self.selection.rows(unl))


@torch.no_grad()
def step_logits(model: nn.Module, rows: AdaptiveRows, strong: bool):
    """(labeled, weak, strong or None) logits of one no-grad pass over the whole step, its batch statistics its own."""
    parts = [rows.x, rows.weak] + ([rows.strong] if strong else [])
    with batch_statistics(model):
        logits = model(torch.cat(parts)).float()
    nx, nu = len(rows.x), len(rows.weak)
    return logits[:nx], logits[nx:nx + nu], logits[nx + nu:] if strong else None


class AdaptiveThreshold(FixMatch, ABC):
    """FixMatch with ``select`` (the subclass's: state update, targets, weights) in place of the fixed τ."""

    needs_strong = False  # select reads the strong views' predictions too (FreeMatch's fairness term)
    stats = ("pass_rate", "threshold")

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.pending_index = None
        self.step = 0
        self.last_stats: Dict[str, torch.Tensor] = {}

    def start_step(self, step: int, index: Optional[torch.Tensor]) -> None:
        self.step, self.pending_index = step, index

    def batch(self, x_lb, y_lb, x_ulb, models: Models) -> AdaptiveRows:
        weak, strong = x_ulb
        rows = AdaptiveRows(x_lb, y_lb, weak, strong, len(x_lb), len(weak), index=self.pending_index)
        self.pending_index = None
        if self.cfg.accum_steps > 1:
            logits_x, logits_w, logits_s = step_logits(models.live, rows, self.needs_strong)
            rows = replace(rows, selection=self.select_step(logits_x, y_lb, logits_w, logits_s, rows.index))
        return rows

    def select_step(self, logits_x, y, logits_w, logits_s, index) -> Selection:
        """Gather the step's rows over the ranks, ``select``, and keep this rank's share of the result."""
        ranks = world_size()

        def gather(t):
            return None if t is None else gather_rows(t.detach().float() if t.is_floating_point() else t, ranks)

        step = StepLogits(gather(logits_x), gather(y), gather(logits_w), gather(logits_s), gather(index))
        selection = self.select(step)
        n = len(logits_w)
        return selection.rows(slice(rank() * n, (rank() + 1) * n)) if ranks > 1 else selection

    @abstractmethod
    def select(self, step: StepLogits) -> Selection:
        """Update the state once with the step's rows (every rank's), then each row's target and weight."""

    def loss(self, net: nn.Module, micro: AdaptiveRows, autocast) -> Dict[str, torch.Tensor]:
        logits_x, logits_w, logits_s = joint_logits(net, micro, autocast)
        selection = micro.selection
        if selection is None:  # one micro-batch: the selection comes from this very pass, as the official code
            strong = logits_s if self.needs_strong else None
            selection = self.select_step(logits_x, micro.y, logits_w, strong, micro.index)
        unsup = (soft_cross_entropy(logits_s, selection.targets) * selection.weights).sum() / micro.full_u
        return {"x": supervised_loss(logits_x, micro.y, micro.full_x), "u": unsup,
                **self.extra_terms(logits_s, selection, micro)}

    def extra_terms(self, logits_s: torch.Tensor, selection: Selection, micro: AdaptiveRows) -> Dict[str, torch.Tensor]:
        """Terms beyond loss_x and loss_u (FreeMatch's fairness); none by default."""
        return {}

    def step_stats(self) -> Dict[str, torch.Tensor]:
        return self.last_stats

    def check_classes(self, per_class: torch.Tensor, what: str) -> None:
        """Refuse a saved per-class statistic of another class count (a checkpoint of other data)."""
        if len(per_class) != self.num_classes:
            raise ValueError(f"{self.cfg.algorithm}'s {what} count {len(per_class)} classes, this run's data has "
                             f"{self.num_classes}")
