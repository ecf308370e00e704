"""ReMixMatch as the FixMatch paper re-ran it (official ``cta/cta_remixmatch.py`` on ``remixmatch_no_cta.py`` of
google-research/fixmatch): distribution alignment, K CTAugment views, MixUp over every view, a pre-mixup loss on one
strong view and a rotation loss.

    p        = sg[softmax(f(u_weak))]                  train-mode batch norm, running statistics untouched
    q        = sharpen(p·(1e-6 + p_data)/(1e-6 + p_model), renormalised per row; T)         (redux '1st')
    p_data   = EMA 0.999 of the mean one-hot labeled label, from uniform; p_model = the mean of the last ``dbuf``
               per-batch means of p, from uniform rows; this step reads both before it updates them
    loss_rot = 1/B Σ CE(r, rot_head(features(rotate_r(u_strong1))))     r by position: 0°, 180°, 90° ccw, 90° cw
    loss_kl  = 1/B Σ CE(q, f(u_strong1))                 soft cross-entropy before MixUp (the official "kl")
    MixUp    of [x_strong; u_weak; u_strong1..K] with targets [onehot(y); q × (K+1)]: one permutation of all rows,
             λ' = max(λ, 1 − λ) per row (mode 'xxy.yxy')
    loss_x   = 1/B Σ CE(t', f(x')),  loss_u = 1/(B(K+1)) Σ CE(t', f(u'))    soft cross-entropies over K+2 interleaved
             passes of B rows: only the last pass's batch statistics update the running ones
    loss     = loss_x + w_kl·ramp·loss_kl + w_match·ramp·loss_u + w_rot·loss_rot,  ramp = clip(n/(warmup_kimg·1024))

with n the labeled images seen. The labeled images are trained on in CTAugment's strong view (the policy, no extra
cutout), as are the K strong unlabeled views; the unlabeled set includes the labeled images; CTAugment learns from the
EMA model's probes, as in FixMatch. The rotation head is part of the network (``WideResNet.add_rotation_head``), so
SGD, its L2, the EMA and the checkpoint include it, as the official ``classify_rot`` scope; evaluation never uses it.

The recipe is FixMatch's (SGD, Nesterov, lr 0.03, cosine over 7π/16, L2 5e-4 on kernels), as ``remixmatch_no_cta.py``
sets it and the FixMatch paper ran every baseline. ``cta_remixmatch.py``'s own lr 0.002 and wd 0.02 are left over
from the ReMixMatch repository's Adam script (the file is a copy of it) and would pair SGD with Adam's settings. K is
8, the ReMixMatch paper's, not the official flag's default 1.

Under gradient accumulation the guess sees the whole step's weak views and the mixup is drawn once (as MixMatch);
the pre-mixup, rotation and mixed passes run per micro-batch, each on its own batch statistics.
"""
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..batch import Batch, labeled_then_views
from ..config import ConfigError
from ..distributed import mean_over_ranks
from ..losses import linear_rampup, soft_cross_entropy_sum
from ..mixmatch import draw_mixup, interleave, mixup, sharpen
from ..models import frozen_bn_stats
from .base import Algorithm, Models, one_hot, teacher_probs
from .strong import StrongAugment, world_size
from .thresholds import align

NAME = "remixmatch"
CLASS = "ReMixMatch"
STEP_COST = 37  # per labeled image at K = 8: K+2 mixed, strong-1 and rotation passes forward and backward, the guess
SUMMARY = "ReMixMatch: distribution alignment, K CTAugment views, MixUp of every view, pre-mixup and rotation losses"
OPTIONS = {
    "K": (8, "strong (CTAugment) views per unlabeled image, beside the weak one"),
    "T": (0.5, "sharpening temperature"),
    "alpha": (0.75, "MixUp Beta(alpha, alpha) parameter"),
    "w_match": (1.5, "weight of the unlabeled loss after MixUp (ramped up over --warmup-kimg)"),
    "w_kl": (0.5, "weight of the first strong view's loss before MixUp (ramped up over --warmup-kimg)"),
    "w_rot": (0.5, "weight of the rotation loss (constant)"),
    "warmup_kimg": (1024.0, "w_match and w_kl rise linearly from 0 over this many thousand (x1024) labeled images "
                            "(0: no ramp-up)"),
    "dbuf": (128, "batches whose mean prediction distribution alignment averages (p_model)"),
}
LIKE = ("fixmatch", ())  # FixMatch's recipe (its DEFAULTS), as fixmatch.py declares it
ROTATIONS = 4
P_DATA_DECAY = 0.999


def rotation_labels(n: int) -> torch.Tensor:
    """Row r's rotation: its quarter of the batch (0°, 180°, 90° ccw, 90° cw), the remainder in the last quarter."""
    b4 = n // 4
    if not b4:
        return torch.full((n,), ROTATIONS - 1)
    return torch.div(torch.arange(n), b4, rounding_mode="floor").clamp(max=ROTATIONS - 1)


def rotate_by_position(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The official ``random_rotate`` (deterministic despite its name) of square images [N, C, H, W]: the first
    quarter as is, the second turned 180°, the third transposed and flipped vertically (90° counter-clockwise), the
    rest transposed and flipped horizontally (90° clockwise); and the labels 0-3."""
    b4 = len(x) // 4
    t = x[2 * b4:].transpose(2, 3)
    rotated = torch.cat([x[:b4], x[b4:2 * b4].flip(2, 3), t[:b4].flip(2), t[b4:].flip(3)])
    return rotated, rotation_labels(len(x)).to(x.device)


class DistributionAlignment:
    """p_data (``layers.PData``: EMA of the labeled one-hots) and the p_model buffer (``layers.PMovingAverage``)."""

    def __init__(self, num_classes: int, dbuf: int):
        self.p_data = torch.full((num_classes,), 1.0 / num_classes)
        self.buffer = torch.full((dbuf, num_classes), 1.0 / num_classes)

    def read(self, device) -> Tuple[torch.Tensor, torch.Tensor]:
        """(p_data, p_model), each normalised to sum to 1, on ``device`` (where the state then stays)."""
        self.p_data, self.buffer = self.p_data.to(device), self.buffer.to(device)
        p_model = self.buffer.mean(0)
        return self.p_data / self.p_data.sum(), p_model / p_model.sum()

    def update(self, p_mean: torch.Tensor, label_mean: torch.Tensor) -> None:
        """The oldest buffer row out, this batch's mean prediction in; p_data one EMA step towards the labels."""
        self.buffer = torch.cat([self.buffer[1:], p_mean[None].to(self.buffer)])
        self.p_data = self.p_data * P_DATA_DECAY + label_mean.to(self.p_data) * (1 - P_DATA_DECAY)

    def state_dict(self) -> dict:
        return {"p_data": self.p_data.detach().cpu().clone(), "p_model": self.buffer.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["p_model"].shape != self.buffer.shape:
            raise ValueError(f"the p_model buffer has shape {tuple(state['p_model'].shape)}, this run's "
                             f"{tuple(self.buffer.shape)} (--dbuf, classes)")
        self.p_data, self.buffer = state["p_data"].clone().float(), state["p_model"].clone().float()


@dataclass
class ReMixMatchRows:
    """The mixed rows [labeled; weak; strong 1..K] with their targets, and the first strong view's rows: unmixed
    with the guess (loss_kl), and rotated with the rotation labels (loss_rot)."""
    mixed: Batch
    strong1: torch.Tensor
    guess: torch.Tensor
    rotated: torch.Tensor
    rot_labels: torch.Tensor

    def part(self, index: int, count: int) -> "ReMixMatchRows":
        """Micro-batch ``index`` of ``count``: its share of every group of rows."""
        groups = len(self.mixed.x) // self.mixed.n_lb
        b = self.mixed.n_lb // count
        one = slice(index * b, (index + 1) * b)
        return ReMixMatchRows(labeled_then_views(self.mixed, groups - 1, index, count), self.strong1[one],
                              self.guess[one], self.rotated[one], self.rot_labels[one])


def forward_last_updates(net: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Logits of the rows [labeled; unlabeled groups] in interleaved passes of ``chunk`` rows, where only the last
    pass updates the batch-norm running statistics (``remixmatch_no_cta.py:132-136``)."""
    chunks = interleave(list(x.split(chunk)), chunk)
    with frozen_bn_stats(net):
        logits = [net(c) for c in chunks[:-1]]
    logits.append(net(chunks[-1]))
    return torch.cat(interleave(logits, chunk))


class ReMixMatch(Algorithm):
    """The guess with distribution alignment and the mixup in ``batch``; four terms in ``loss``."""

    unlabeled_views = 1
    unlabeled_has_labeled = True
    labeled_strong = True
    terms = ("x", "u", "kl", "rot")

    def __init__(self, cfg, num_classes: int):
        super().__init__(cfg, num_classes)
        self.K = self.strong_views = cfg.K
        self.augment = StrongAugment.for_run(cfg, "cta", cutout=False)
        self.alignment = DistributionAlignment(num_classes, cfg.dbuf)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if not hasattr(model, "add_rotation_head"):
            raise ConfigError(f"remixmatch's rotation loss needs a WideResNet (--model wrn-...), not "
                              f"{type(model).__name__}")
        model.add_rotation_head(ROTATIONS)
        return model

    def strong(self, images: torch.Tensor) -> torch.Tensor:
        return self.augment(images)

    def observe_labeled(self, images: torch.Tensor, labels: torch.Tensor, models: Models) -> None:
        self.augment.learn(images, labels, models.ema)

    def guess(self, p: torch.Tensor, y_lb: torch.Tensor) -> torch.Tensor:
        """The aligned, sharpened guess of the weak view's softmax ``p``; then (every rank with the same means)
        p_model and p_data take this batch in."""
        p_data, p_model = self.alignment.read(p.device)
        q = sharpen(align(p, p_data, p_model), self.cfg.T)
        ranks = world_size()
        self.alignment.update(mean_over_ranks(p.mean(0), ranks),
                              mean_over_ranks(one_hot(y_lb, self.num_classes).mean(0), ranks))
        return q

    def batch(self, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor],
              models: Models) -> ReMixMatchRows:
        weak, strong = x_ulb[0], list(x_ulb[1:])
        n = len(x_lb)
        q = self.guess(teacher_probs(models.live, weak), y_lb)
        rotated, rot_labels = rotate_by_position(strong[0])
        x = torch.cat([x_lb, weak, *strong])
        targets = torch.cat([one_hot(y_lb, self.num_classes), q.repeat(self.K + 1, 1)])
        lam, perm = draw_mixup(n, n * (self.K + 1), self.cfg.alpha)
        x_mix, t_mix = mixup(x, targets, lam, perm)
        return ReMixMatchRows(Batch(x_mix, t_mix, n, n), strong[0], q, rotated, rot_labels)

    def micro_batch(self, batch: ReMixMatchRows, index: int, count: int) -> ReMixMatchRows:
        return batch.part(index, count)

    def loss(self, net: nn.Module, micro: ReMixMatchRows, autocast) -> Dict[str, torch.Tensor]:
        """The four terms of one micro-batch, each divided by the whole step's row counts."""
        b, full, t = micro.mixed.n_lb, micro.mixed.full_n_lb, micro.mixed.targets
        with autocast():
            logits = forward_last_updates(net, micro.mixed.x, b)
            with frozen_bn_stats(net):
                logits_s1 = net(micro.strong1)
                logits_rot = net(micro.rotated, rotation=True)
        return {"x": soft_cross_entropy_sum(logits[:b], t[:b]) / full,
                "u": soft_cross_entropy_sum(logits[b:], t[b:]) / (full * (self.K + 1)),
                "kl": soft_cross_entropy_sum(logits_s1, micro.guess) / full,
                "rot": F.cross_entropy(logits_rot.float(), micro.rot_labels, reduction="sum") / full}

    def weights(self, images: float) -> Dict[str, float]:
        ramp = linear_rampup(images, self.cfg.warmup_kimg * 1024)
        return {"u": self.cfg.w_match * ramp, "kl": self.cfg.w_kl * ramp, "rot": self.cfg.w_rot}

    def state_dict(self) -> dict:
        return {**self.augment.state_dict(), "alignment": self.alignment.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.augment.load_state_dict(state)
        if "alignment" in state:
            self.alignment.load_state_dict(state["alignment"])
