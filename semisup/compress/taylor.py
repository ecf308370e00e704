"""The training loss on a few fresh batches, for gradient×weight (Taylor) importance.

It is the run's own algorithm's loss (``algorithms.base.make_algorithm``) with every term at its weight of the run's
last step: for a MixMatch checkpoint the MixMatch loss (guess, sharpen, mix up, interleave) at the full λu, for a
supervised one cross-entropy on the labeled batch, for VAT its three terms. The model being scored is also the
teacher of Mean Teacher and ICT (a checkpoint's EMA weights are what gets pruned). The model runs in train mode, as
in training, but no batch norm running statistic changes. A network the algorithm's loss needs more of (ReMixMatch's
rotation head, present in its checkpoints) gets it from ``prepare_model`` first.
"""
from contextlib import nullcontext

import torch
import torch.nn as nn

from ..algorithms.base import Models, labeled_view, make_algorithm, total_loss, unlabeled_pool
from ..augment import draw_views, to_uint8
from ..config import Config
from ..data import InfiniteSampler, SSLData
from ..models import frozen_bn_stats


def training_loss_fn(cfg: Config, data: SSLData, device: torch.device, batch_size: int, seed: int = 0):
    """``loss_fn(model, i)`` for ``taylor_scores``: the loss of the i-th batch drawn with ``seed``."""
    algorithm = make_algorithm(cfg, data.num_classes)
    weights = algorithm.weights(cfg.steps * cfg.batch_size)
    pool = unlabeled_pool(data, algorithm)
    labeled = InfiniteSampler(len(data.labeled), batch_size, seed)
    unlabeled = InfiniteSampler(len(pool), batch_size * algorithm.uratio, seed + 1)
    generator = torch.Generator().manual_seed(seed)

    def views(ds, sampler, count, strong=0):
        x, y = draw_views(ds, sampler.next(), count, generator=generator, pad=data.pad, flip=data.flip,
                          strong=algorithm.strong, strong_count=strong)
        return [v.to(device) for v in x], y.to(device)

    def loss_fn(model: nn.Module, i: int) -> torch.Tensor:
        model = algorithm.prepare_model(model)
        was_training = model.training
        model.train()
        (x_lb,), y_lb = views(data.labeled, labeled, 1)
        x_lb = labeled_view(algorithm, x_lb, to_uint8(x_lb), torch.contiguous_format)
        n_views = algorithm.unlabeled_views + algorithm.strong_views
        x_ulb = views(pool, unlabeled, algorithm.unlabeled_views, algorithm.strong_views)[0] if n_views else []
        algorithm.start_step(cfg.steps, None)
        with frozen_bn_stats(model):
            batch = algorithm.batch(x_lb, y_lb, x_ulb, Models(model, model))
            terms = algorithm.loss(model, batch, nullcontext)
        model.train(was_training)
        return total_loss(terms, weights)

    return loss_fn
