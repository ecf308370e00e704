"""Predictions and top-k accuracy: what training, evaluation and compression all measure a model with.

One rule turns logits into classes wherever semisup reports an accuracy (the top-1 and top-k of evaluate.py, its
confusion matrix, per-class scores and calibration, train.py's logged accuracies, the tables built from them, the
compression and sensitivity commands): the class with the highest logit, and among equal logits the lowest class
index (``ranked_classes``). A second rule would let two numbers of one report disagree on every tied image.

Ties are made rare where they would be common: under bf16 autocast a logit keeps 8 bits of mantissa, so two
classes often get the very same logit. ``predict`` therefore computes the classifier head in float32 from the
body's features (``model_logits``), and the tie rule decides only what float32 cannot tell apart.
"""
from contextlib import nullcontext

import torch
import torch.nn as nn

from .augment import to_float
from .runtime import eval_batch_size


def model_logits(model: nn.Module, x: torch.Tensor, autocast=None) -> torch.Tensor:
    """Float32 logits of ``model`` on a float batch: the body under ``autocast``, the classifier head ``fc`` in
    float32 on the body's ``features`` (every registered model is ``fc(features(x))``).

    A model without ``features`` and ``fc`` runs whole under ``autocast``.
    """
    head, features = getattr(model, "fc", None), getattr(model, "features", None)
    if not isinstance(head, nn.Linear) or not callable(features):
        with autocast or nullcontext():
            return model(x).float()
    with autocast or nullcontext():
        h = features(x)
    with torch.autocast(x.device.type, enabled=False):
        return head(h.float())


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
        outs.append(model_logits(model, x, autocast))
    model.train(was_training)
    if not outs:
        return torch.zeros(0, 0)
    return torch.cat(outs).cpu()


def ranked_classes(logits: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The ``k`` highest-scoring classes of each row [N, k], best first; equal logits rank the lower class first.

    A stable descending sort, so the order does not depend on the device or on how ``topk`` happens to visit the
    row: column 0 is ``argmax`` with its first-maximum rule (torch's and numpy's), and it is in every top-k.
    """
    return torch.sort(torch.as_tensor(logits), dim=1, descending=True, stable=True).indices[:, :k]


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """The predicted class of each row [N]: the highest logit, the lowest class index among equal ones."""
    return ranked_classes(logits, 1)[:, 0]


def tied_top(logits: torch.Tensor) -> int:
    """Rows whose highest logit is shared by two or more classes: the images the tie rule decides."""
    logits = torch.as_tensor(logits)
    if logits.shape[0] == 0 or logits.shape[1] < 2:
        return 0
    top2 = logits.topk(2, dim=1).values
    return int((top2[:, 0] == top2[:, 1]).sum())


def accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy in percent, by ``ranked_classes``' rule (top-1 = ``predicted_classes``).

    Counted exactly (100 * hits / N, not a float32 mean), so a report's top-1 is its confusion matrix's trace
    over the image count to the last digit.
    """
    if len(labels) == 0:
        return float("nan")
    top = ranked_classes(logits, min(k, logits.shape[1]))
    hits = int((top == torch.as_tensor(labels).to(top.device)[:, None]).any(1).sum())
    return 100.0 * hits / len(labels)
