"""The rows of one optimizer step, and how an algorithm's batch splits into micro-batches."""
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Rows ready for the forward passes, with their (soft) targets.

    ``n_lb`` counts the labeled rows here; ``full_n_lb`` those of the whole optimizer step, by which a micro-batch's
    losses are divided so that the micro-batch gradients add up to the full batch's.
    """
    x: torch.Tensor
    targets: torch.Tensor
    n_lb: int
    full_n_lb: int


def rows(batch: Batch, index: int, count: int) -> Batch:
    """Micro-batch ``index`` of ``count`` of a batch of labeled rows only."""
    b = batch.n_lb // count
    part = slice(index * b, (index + 1) * b)
    return Batch(batch.x[part], batch.targets[part], b, batch.full_n_lb)


def labeled_then_views(batch: Batch, views: int, index: int, count: int) -> Batch:
    """Micro-batch ``index`` of ``count`` of rows [n_lb labeled; ``views`` blocks of n_lb]: its share of each."""
    n, b = batch.n_lb, batch.n_lb // count

    def take(t: torch.Tensor) -> torch.Tensor:
        blocks = t[n:].view(views, n, *t.shape[1:])
        return torch.cat([t[index * b:(index + 1) * b], blocks[:, index * b:(index + 1) * b].flatten(0, 1)])

    return Batch(take(batch.x), take(batch.targets), b, batch.full_n_lb)
