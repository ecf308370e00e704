"""The strong view of FixMatch, UDA and ReMixMatch, RandAugment or CTAugment (``semisup.strong``), and CTAugment's
learning.

CTAugment learns its bin weights every step from probe images: each weakly augmented labeled image gets a random
probe policy, the EMA model (eval mode, as the official ``classify_op``) predicts it, and the policy's bins move
towards the prediction's proximity to the label (``cta/lib/train.py:63-76``). Under torchrun every rank gathers
every rank's policies and proximities and applies them in rank order, so the weights stay identical on every process
with no broadcast. The weights are the algorithm's state: saved in the checkpoint and restored exactly.
"""
import torch
import torch.distributed as dist
import torch.nn as nn

from ..distributed import gather_per_rank
from ..predict import predict
from ..runtime import resolve_aug_workers
from ..strong import CTAugment, proximity
from ..strong.pool import AugmentPool, image_seeds

KINDS = ("ra", "cta")


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class StrongAugment:
    """``ra`` (nothing learned) or ``cta``; augments on the CPU, in ``workers`` processes or in this one, every
    image from its own seed (``semisup.strong.pool``), and hands the images back on their device."""

    def __init__(self, kind: str, seed: int = 0, workers: int = 0, cutout: bool = True):
        if kind not in KINDS:
            raise ValueError(f"unknown strong augmentation {kind!r}; one of {', '.join(KINDS)}")
        if not cutout and kind != "cta":
            raise ValueError("only CTAugment draws a strong view without its cutout (ReMixMatch's)")
        self.kind, self.cutout, self.seed = kind, cutout, seed
        self.cta = CTAugment() if kind == "cta" else None
        self.pool = AugmentPool(workers)
        self.calls = 0  # batches augmented so far: with the seed and rank, it fixes every image's draws

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The strong view of weakly augmented uint8 images [N, C, H, W] (CTAugment's with or without the cutout)."""
        seeds = image_seeds(self.seed, rank(), self.calls, len(images))
        self.calls += 1
        weights = self.cta.weights if self.cta is not None else None
        return self.pool.map(self.kind, images.cpu(), seeds, weights, self.cutout).to(images.device)

    @torch.no_grad()
    def learn(self, images: torch.Tensor, labels: torch.Tensor, ema: nn.Module) -> None:
        """CTAugment: one probe per labeled image, its proximity under the EMA model, the weights updated with every
        rank's probes in rank order. Nothing for RandAugment."""
        if self.cta is None:
            return
        probes, policies = zip(*(self.cta.probe(x) for x in images.cpu()))
        probs = predict(ema, torch.stack(list(probes))).softmax(-1)
        mine = (list(policies), proximity(probs, labels.cpu()).tolist())
        for rank_policies, rank_proximities in gather_per_rank(mine, world_size()):
            self.cta.update(rank_policies, rank_proximities)

    def state_dict(self) -> dict:
        return {"calls": self.calls, **({"cta": self.cta.state_dict()} if self.cta is not None else {})}

    @classmethod
    def for_run(cls, cfg, kind: str, cutout: bool = True) -> "StrongAugment":
        """The run's strong augmentation: its seed, and --aug-workers resolved for its device."""
        return cls(kind, cfg.seed, resolve_aug_workers(cfg.aug_workers, cfg.device), cutout)

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state.get("calls", 0))
        if self.cta is not None and "cta" in state:
            self.cta.load_state_dict(state["cta"])
