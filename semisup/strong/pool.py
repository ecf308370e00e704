"""Strong views made by worker processes, each image from its own seed.

A FixMatch step at μ = 7 needs 448 strong views; one CPU core makes about 2,000 RandAugment or 700 CTAugment views a
second (``benchmarks/bench_augment.py``), so on a GPU the views would take longer than the step. ``AugmentPool``
splits a batch over ``workers`` processes. Every image draws from a generator seeded by (run seed, rank, call,
position), so the views are the same whatever the number of workers (0: made in the calling process), and a
resumed run that restores the call count makes the same views again.
"""
import concurrent.futures
import multiprocessing
from typing import List, Optional

import torch

from .ctaugment import CTAugment
from .randaugment import RandAugment

KINDS = ("ra", "cta")


def image_seeds(seed: int, rank: int, call: int, n: int) -> List[int]:
    """One 62-bit seed per image of call ``call`` of rank ``rank``: a seeded generator's draws, fixed by the three."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + rank) * 1_000_000_007 + call)
    return torch.randint(0, 1 << 62, (n,), generator=g).tolist()


def augment_images(kind: str, images: torch.Tensor, seeds: List[int], cta_weights: Optional[dict] = None,
                   cutout: bool = True) -> torch.Tensor:
    """The strong view of each uint8 image [N, C, H, W], image i drawn from a generator seeded by ``seeds[i]``:
    RandAugment and its cutout, or CTAugment's policy from ``cta_weights`` then a full cutout (``cutout=False``:
    the policy alone, ReMixMatch's strong view)."""
    if kind == "ra":
        op = RandAugment()
        return torch.stack([op(x, torch.Generator().manual_seed(s)) for x, s in zip(images, seeds)])
    cta = CTAugment()
    if cta_weights is not None:
        cta.weights = cta_weights
    return torch.stack([cta(x, torch.Generator().manual_seed(s), cutout) for x, s in zip(images, seeds)])


def _one_thread() -> None:
    torch.set_num_threads(1)


class AugmentPool:
    """``workers`` processes (started on first use, spawned: no fork of a process with threads) or none."""

    def __init__(self, workers: int = 0):
        self.workers, self._executor = workers, None

    def map(self, kind: str, images: torch.Tensor, seeds: List[int], cta_weights: Optional[dict] = None,
            cutout: bool = True) -> torch.Tensor:
        """``augment_images`` over the batch, in ``workers`` contiguous chunks at once."""
        if self.workers <= 0 or len(images) < 2:
            return augment_images(kind, images, seeds, cta_weights, cutout)
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)
        bounds = [round(i * len(images) / self.workers) for i in range(self.workers + 1)]
        jobs = [self._executor.submit(augment_images, kind, images[a:b], seeds[a:b], cta_weights, cutout)
                for a, b in zip(bounds, bounds[1:]) if b > a]
        return torch.cat([job.result() for job in jobs])

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None
