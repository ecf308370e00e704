"""The contract every algorithm fulfils, and the pieces the official baselines share.

The Trainer draws the augmented views, then asks the algorithm for

- ``batch(x_lb, y_lb, x_ulb, models)``: everything of this optimizer step that is computed once for the whole
  batch and carries no gradient (guessed labels, teacher predictions, VAT's perturbation, mixup draws);
  ``models.live`` is the network being trained, ``models.ema`` its parameter EMA (the Mean Teacher);
- ``micro_batch(batch, index, count)``: micro-batch ``index`` of ``count`` (gradient accumulation);
- ``loss(net, micro, autocast)``: the named loss terms of one micro-batch, each divided by the *whole* batch's row
  count so that the micro-batch gradients add up to the whole batch's;
- ``weights(images)``: each term's weight after ``images`` labeled images (ramped or constant; 1 if absent);
- ``state_dict()`` / ``load_state_dict()``: whatever a resumed run needs besides the model and optimizer;
- ``step_stats()``: after each optimizer step, the statistics named by ``stats`` (the share of unlabeled rows that
  passed the threshold, the thresholds), which the run averages over the steps between evaluations and logs.

Before each step's batch the Trainer calls ``start_step(step, index)`` with the step about to be taken and the
dataset indices of the step's unlabeled images (FlexMatch marks each image by its index); ``bind_unlabeled(count)``
tells the algorithm, once, how many images the unlabeled set holds.

What the Trainer draws is declared by class attributes: ``unlabeled_views`` weakly augmented (flip and crop) views
of ``uratio`` unlabeled images per labeled one, then ``strong_views`` views that ``strong`` augments further
(RandAugment, CTAugment), all in one list; ``unlabeled_has_labeled``: the unlabeled set includes the labeled images
(FixMatch's substrate); ``labeled_strong``: the labeled view is ``strong`` of the weakly augmented labeled image
(ReMixMatch trains on CTAugment-augmented labeled images). ``observe_labeled`` sees each step's weakly augmented
labeled images as uint8 before the batch is made, in an algorithm with strong views (CTAugment's probes learn from
them). ``prepare_model`` gives the network what the algorithm's loss needs beyond the classifier (ReMixMatch's
rotation head) before the Trainer builds the optimizer and the EMA around it, so both include it.

Batch norm, as the official code: the first forward pass of ``loss`` (the labeled one) updates the running
statistics; every other pass runs in training mode on its own batch statistics with the running ones frozen.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..augment import to_float
from ..config import Config, ConfigError
from ..datasets import concat, unlabeled_dataset
from ..models import frozen_bn_stats
from . import load


class Models(NamedTuple):
    live: nn.Module  # the network being trained (never the DDP or compiled wrapper)
    ema: nn.Module  # its parameter EMA, with the live network's batch-norm buffers


@dataclass
class Rows:
    """Per-example tensors of one step (every one with the same first dimension) and the step's row count."""
    data: Dict[str, torch.Tensor]
    full: int

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.data[key]

    def part(self, index: int, count: int) -> "Rows":
        """Micro-batch ``index`` of ``count``: the same slice of every tensor."""
        n = next(iter(self.data.values())).shape[0] // count
        return Rows({k: v[index * n:(index + 1) * n] for k, v in self.data.items()}, self.full)


class Algorithm:
    """Defaults for the optional parts of the contract; subclasses supply ``batch`` and ``loss``."""

    unlabeled_views = 0  # weakly augmented views the Trainer draws per unlabeled image (0: labeled images only)
    strong_views = 0  # strongly augmented views per unlabeled image, after the weak ones
    uratio = 1  # unlabeled images per labeled image (FixMatch's μ)
    unlabeled_has_labeled = False  # the unlabeled set includes the labeled images, their labels dropped
    labeled_strong = False  # the labeled view is the strong augmentation of the weak one (ReMixMatch)
    strong = None  # with strong views: uint8 images [N, C, H, W] → their strong augmentation (RandAugment, CTAugment)
    terms = ("x",)  # the loss terms' names, in the order they are logged
    stats = ()  # the step statistics' names (``step_stats``), logged at every evaluation

    def __init__(self, cfg, num_classes: int):
        self.cfg, self.num_classes = cfg, num_classes

    def micro_batch(self, batch, index: int, count: int):
        return batch.part(index, count)

    def weights(self, images: float) -> Dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def bind_unlabeled(self, count: int) -> None:
        """The number of images in the unlabeled set (its dataset indices are 0..count-1); unused by default."""

    def start_step(self, step: int, index) -> None:
        """The step about to be taken and its unlabeled images' dataset indices (None: no unlabeled images)."""

    def step_stats(self) -> Dict[str, torch.Tensor]:
        """The last step's statistics, each a scalar or a per-class tensor; none by default."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore by default."""

    def observe_labeled(self, images: torch.Tensor, labels: torch.Tensor, models: Models) -> None:
        """The step's weakly augmented labeled images (uint8) and labels, before ``batch``; nothing by default."""

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The network to train, given what the loss needs besides the classifier; unchanged by default."""
        return model


def labeled_view(algorithm: Algorithm, x_lb: torch.Tensor, raw_lb: torch.Tensor, memory_format) -> torch.Tensor:
    """The labeled images the step trains on: the weak view, or (``labeled_strong``) the strong augmentation of
    that same weak view as uint8, as the official ReMixMatch data (``libml/augment.py:311-317``)."""
    if not algorithm.labeled_strong:
        return x_lb
    return to_float(algorithm.strong(raw_lb), memory_format)


def check_data(data, algorithm: Algorithm) -> None:
    """Refuse, before anything is written, data the algorithm cannot use: the strong augmentations' ops (colour,
    contrast, solarize...) are defined on 3-channel RGB images, and an SSL algorithm needs unlabeled images."""
    channels = data.labeled.images.shape[1]
    if algorithm.strong_views and channels != 3:
        raise ConfigError(f"--strong-aug {algorithm.cfg.strong_aug} augments RGB images; this dataset's images have "
                          f"{channels} channel(s)")
    draws = algorithm.unlabeled_views + algorithm.strong_views
    if draws and len(unlabeled_pool(data, algorithm)) == 0:
        raise ConfigError(f"{algorithm.cfg.algorithm} trains on unlabeled images, and this split leaves none "
                          f"(--n-labeled 0 labels every training image); use --algorithm supervised or fs-mixup")


def unlabeled_pool(data, algorithm: Algorithm):
    """The images the unlabeled sampler draws from: the unlabeled set, led by the labeled images (labels dropped)
    for an algorithm whose unlabeled set includes them."""
    if not algorithm.unlabeled_has_labeled:
        return data.unlabeled
    return concat([unlabeled_dataset(data.labeled.images), data.unlabeled])


def make_algorithm(cfg: Config, num_classes: int):
    """The ``--algorithm`` object (``semisup.algorithms.load`` imports its file); one that declares strong views
    must say how it makes them."""
    algorithm = load(cfg.algorithm)(cfg, num_classes)
    if (algorithm.strong_views or algorithm.labeled_strong) and algorithm.strong is None:
        raise TypeError(f"{type(algorithm).__name__} declares strong views but no strong(images) to make them")
    return algorithm


def total_loss(terms: Dict[str, torch.Tensor], weights: Dict[str, float]) -> torch.Tensor:
    """Σ weight·term; a term without a weight counts once."""
    return sum(weights.get(name, 1.0) * value for name, value in terms.items())


@contextmanager
def batch_statistics(model: nn.Module):
    """Training-mode batch norm on this pass's own statistics, the running ones untouched (teachers, guesses)."""
    was_training = model.training
    model.train()
    try:
        with frozen_bn_stats(model):
            yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def teacher_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """sg[softmax(model(x))] in training-mode batch norm, as the official teachers run (frozen buffers)."""
    with batch_statistics(model):
        return model(x).float().softmax(-1)


def one_hot(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(1 - s)·onehot + s/K: the official ``MultiModel.augment`` label smoothing (s = 0: plain one-hot)."""
    return F.one_hot(y, num_classes).float() * (1 - smoothing) + smoothing / num_classes
