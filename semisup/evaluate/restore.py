"""Re-estimate a trained model's batch-norm statistics before evaluating it (the official code's "tune" step).

The model itself is rebuilt by ``checkpoint.model_from_checkpoint``.
"""
from contextlib import nullcontext

import torch
import torch.nn as nn
from torch.optim.swa_utils import update_bn

from ..augment import to_float


def recalibrate_bn(model: nn.Module, images: torch.Tensor, batch_size: int, device=None,
                   memory_format=torch.contiguous_format, autocast=None) -> int:
    """Re-estimate every batch norm's running mean and variance on ``images`` (uint8, no augmentation).

    ``torch.optim.swa_utils.update_bn`` does the work: it resets the running statistics, sets each layer's
    momentum to None (PyTorch's cumulative moving average), runs the images in train mode under no_grad and puts
    the momenta and the train/eval mode back. After the pass the statistics are the plain average of the
    per-batch statistics (the exact mean and unbiased variance when one batch holds all images); no parameter
    changes. Returns the number of batches.
    """
    device = device or next(model.parameters()).device
    batches = [images[start:start + batch_size] for start in range(0, len(images), batch_size)]
    floats = (to_float(b.to(device), memory_format) for b in batches)
    with autocast or nullcontext():
        update_bn(floats, model)
    return len(batches)
