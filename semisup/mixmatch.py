"""MixMatch (Berthelot et al., 2019) as pure functions; ``algorithms/mixmatch.py`` builds the training step.

Batch-norm semantics follow the official code: guessing passes and all but the first mixed chunk use batch
statistics without touching the running averages; the labeled and unlabeled chunks are interleaved so every
forward pass sees both kinds of rows.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import frozen_bn_stats
from .runtime import to_device


def sharpen(p: torch.Tensor, T: float) -> torch.Tensor:
    """p**(1/T), renormalised over the last dimension. T = 1 returns p unchanged."""
    if T == 1:
        return p
    p = p.pow(1.0 / T)
    return p / p.sum(-1, keepdim=True)


def average_and_sharpen(logits: torch.Tensor, T: float) -> torch.Tensor:
    """Guessed labels from logits of shape [K, B, C]: mean softmax over the K views, then sharpen."""
    return sharpen(logits.float().softmax(-1).mean(0), T)


@torch.no_grad()
def guess_labels(model: nn.Module, x_ulb: Sequence[torch.Tensor], T: float) -> torch.Tensor:
    """One train-mode pass per view (BN statistics of that view alone, running stats unchanged)."""
    was_training = model.training
    model.train()
    with frozen_bn_stats(model):
        logits = torch.stack([model(x) for x in x_ulb])
    model.train(was_training)
    return average_and_sharpen(logits, T)


def draw_mixup(n_lb: int, n_ulb: int, alpha: float, mode: str = "all") -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-row λ' = max(λ, 1-λ), λ ~ Beta(α, α), and a partner permutation, for rows [labeled; unlabeled].

    mode: "all" one permutation over everything (MixMatch); "separate" labeled rows mix only with labeled and
    unlabeled only with unlabeled; "labeled"/"unlabeled" mix only that part; "none" mixes nothing.
    λ is drawn for every row in every mode before any permutation, so a row's λ' does not depend on the mode;
    rows the mode leaves alone get λ' = 1 and themselves as partner (the permutations drawn do depend on it).
    """
    n = n_lb + n_ulb
    lam = torch.distributions.Beta(alpha, alpha).sample((n,))
    lam = torch.maximum(lam, 1 - lam)
    perm = torch.arange(n)
    lb, ulb = torch.arange(n_lb), torch.arange(n_lb, n)
    parts = {"all": [perm.clone()], "separate": [lb, ulb], "labeled": [lb], "unlabeled": [ulb], "none": []}[mode]
    mixed = torch.zeros(n, dtype=torch.bool)
    for part in parts:
        perm[part] = part[torch.randperm(len(part))]
        mixed[part] = True
    return torch.where(mixed, lam, torch.ones_like(lam)), perm


def mixup(x: torch.Tensor, targets: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor):
    """x' = λ x + (1-λ) x[perm], and the same for the targets, with one λ per row."""
    lam, perm = to_device(lam, x.device), to_device(perm, x.device)
    lam_x = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    x_mix = x * lam_x + x[perm] * (1 - lam_x)
    t_mix = targets * lam[:, None] + targets[perm] * (1 - lam[:, None])
    return x_mix, t_mix


def interleave_offsets(batch: int, nu: int) -> List[int]:
    groups = [batch // (nu + 1)] * (nu + 1)
    for i in range(batch - sum(groups)):
        groups[-i - 1] += 1
    offsets = [0]
    for g in groups:
        offsets.append(offsets[-1] + g)
    return offsets


def interleave(xy: Sequence[torch.Tensor], batch: int) -> List[torch.Tensor]:
    """Swap slices between chunks so each holds labeled and unlabeled rows; applying it twice is the identity."""
    nu = len(xy) - 1
    offsets = interleave_offsets(batch, nu)
    parts = [[v[offsets[p]:offsets[p + 1]] for p in range(nu + 1)] for v in xy]
    for i in range(1, nu + 1):
        parts[0][i], parts[i][i] = parts[i][i], parts[0][i]
    return [torch.cat(v) for v in parts]


def forward_interleaved(model: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Logits for rows [labeled chunk; unlabeled chunks], each pass over an interleaved chunk of ``chunk`` rows.

    Only the first pass updates the BN running statistics, as in the official code.
    """
    chunks = interleave(list(x.split(chunk)), chunk)
    logits = [model(chunks[0])]
    with frozen_bn_stats(model):
        logits += [model(c) for c in chunks[1:]]
    return torch.cat(interleave(logits, chunk))


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(y, num_classes).float()


def mix_batch(guess_model: nn.Module, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor],
              num_classes: int, T: float, alpha: float, mode: str):
    """Guess, build X̂ and Û, draw the mixup once for the whole batch and apply it.

    Returns (x_mix, t_mix) with rows [B labeled; K*B unlabeled] and the guessed labels. The guessing passes always
    see whole views (B rows), also under gradient accumulation: without gradients they cost little memory, and the
    guesses stay exactly those of the undivided batch.
    """
    q = guess_labels(guess_model, x_ulb, T)
    x = torch.cat([x_lb, *x_ulb])
    targets = torch.cat([one_hot(y_lb, num_classes), q.repeat(len(x_ulb), 1)])
    lam, perm = draw_mixup(len(x_lb), len(x) - len(x_lb), alpha, mode)
    x_mix, t_mix = mixup(x, targets, lam, perm)
    return x_mix, t_mix, q
