"""The training loss on a few fresh batches, for gradient×weight (Taylor) importance.

For a MixMatch checkpoint this is the MixMatch loss (guess, sharpen, mix up, interleave) at the full λu; for a
supervised one, cross-entropy on the labeled batch. The model runs in train mode, as in training, but no batch
norm running statistic changes.
"""
import torch
import torch.nn as nn

from ..augment import augment, to_float
from ..config import Config
from ..data import InfiniteSampler, SSLData
from ..losses import mixup_loss, soft_cross_entropy_sum
from ..mixmatch import forward_interleaved, frozen_bn_stats, mix_batch, one_hot


def training_loss_fn(cfg: Config, data: SSLData, device: torch.device, batch_size: int, seed: int = 0):
    """``loss_fn(model, i)`` for ``taylor_scores``: the loss of the i-th batch drawn with ``seed``."""
    labeled = InfiniteSampler(len(data.labeled), batch_size, seed)
    unlabeled = InfiniteSampler(len(data.unlabeled), batch_size, seed + 1)
    generator = torch.Generator().manual_seed(seed)

    def views(ds, sampler, count):
        idx = sampler.next()
        raw = ds.images[idx]
        return [to_float(augment(raw, generator)).to(device) for _ in range(count)], ds.labels[idx].to(device)

    def loss_fn(model: nn.Module, i: int) -> torch.Tensor:
        was_training = model.training
        model.train()
        (x_lb,), y_lb = views(data.labeled, labeled, 1)
        with frozen_bn_stats(model):
            if cfg.algorithm == "supervised":
                loss = soft_cross_entropy_sum(model(x_lb), one_hot(y_lb, data.num_classes)) / len(x_lb)
            else:
                x_ulb, _ = views(data.unlabeled, unlabeled, cfg.K)
                x_mix, t_mix, _ = mix_batch(model, x_lb, y_lb, x_ulb, data.num_classes, cfg.temperature,
                                            cfg.alpha, cfg.mixup)
                logits = forward_interleaved(model, x_mix, len(x_lb))
                b = len(x_lb)
                loss_x, loss_u = mixup_loss(logits[:b], t_mix[:b], logits[b:], t_mix[b:])
                loss = loss_x + cfg.lambda_u * loss_u
        model.train(was_training)
        return loss

    return loss_fn
