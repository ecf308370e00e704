"""Predictions and top-k accuracy: what training, evaluation and compression all measure a model with."""
from contextlib import nullcontext

import torch
import torch.nn as nn

from .augment import to_float
from .runtime import eval_batch_size


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 0, device=None,
            memory_format=torch.contiguous_format, autocast=None) -> torch.Tensor:
    """Eval-mode float32 logits [N, C] for uint8 images [N, 3, H, W] (on CPU); batch_size 0: the device's default."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    batch_size = eval_batch_size(batch_size, device)
    outs = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size].to(device, non_blocking=True), memory_format)
        with autocast or nullcontext():
            outs.append(model(x).float())
    model.train(was_training)
    if not outs:
        return torch.zeros(0, 0)
    return torch.cat(outs).cpu()


def accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy in percent."""
    if len(labels) == 0:
        return float("nan")
    topk = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return 100.0 * (topk == labels.to(topk.device)[:, None]).any(1).float().mean().item()
