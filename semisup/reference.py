"""A plain MixMatch training step, written the way the popular PyTorch port (YU1ut/MixMatch-pytorch) writes it,
computing this project's math.

fp32, NCHW, eager; per-image PIL augmentation through a ``DataLoader`` with torchvision transforms; two no-grad
guessing passes and three forward chunks; ``.item()`` on the losses every step. The math is the default path's
(per-row λ, one permutation over all rows, guessing passes and all but the first chunk leave the batch-norm running
statistics alone), written independently of ``mixmatch.py`` so that it can check the fast path in the tests and be
the baseline of ``benchmarks/bench_step.py``.
"""
from typing import Iterator, List, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from .mixmatch import draw_mixup


def pil_transform() -> transforms.Compose:
    """Reflect-pad 4 + random 32x32 crop, random flip, then [0, 255] -> [-1, 1] (ToTensor, Normalize(0.5, 0.5))."""
    return transforms.Compose([
        transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])


class PILViews(Dataset):
    """uint8 CIFAR images served one at a time as ``views`` augmented float tensors, through PIL."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, views: int):
        self.images = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())  # HWC for PIL
        self.labels, self.views, self.transform = labels, views, pil_transform()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.images[i])
        return [self.transform(image) for _ in range(self.views)], self.labels[i]


def endless(images: torch.Tensor, labels: torch.Tensor, batch_size: int, views: int) -> Iterator:
    """Shuffled batches forever, restarting the loader at the end of each epoch (no worker processes)."""
    loader = DataLoader(PILViews(images, labels, views), batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=0)
    while True:
        yield from loader


def _interleave(xy: List[torch.Tensor], batch: int) -> List[torch.Tensor]:
    """The port's interleave: swap the i-th slice of chunk 0 with the i-th slice of chunk i."""
    nu = len(xy) - 1
    groups = [batch // (nu + 1)] * (nu + 1)
    for i in range(batch - sum(groups)):
        groups[-i - 1] += 1
    offsets = np.cumsum([0] + groups)
    xy = [[v[offsets[p]:offsets[p + 1]] for p in range(nu + 1)] for v in xy]
    for i in range(1, nu + 1):
        xy[0][i], xy[i][i] = xy[i][i], xy[0][i]
    return [torch.cat(v, dim=0) for v in xy]


def _forward_keeping_bn_stats(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Train-mode forward (batch statistics) whose running averages do not move: momentum 0 makes the update
    ``running * 1 + batch * 0``, exactly the old value; the pass counter is put back afterwards."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        return model(x)
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def reference_losses(model: nn.Module, x_lb: torch.Tensor, y_lb: torch.Tensor, x_ulb: Sequence[torch.Tensor],
                     lam: torch.Tensor, perm: torch.Tensor, T: float, lambda_u: float, num_classes: int = 10):
    """(loss, loss_x, loss_u) of one MixMatch step for given views and mixup draws (lam, perm over all rows)."""
    batch = x_lb.size(0)
    with torch.no_grad():
        p = sum(torch.softmax(_forward_keeping_bn_stats(model, u), dim=1) for u in x_ulb) / len(x_ulb)
        pt = p ** (1 / T)
        targets_u = pt / pt.sum(dim=1, keepdim=True)
    targets_x = torch.zeros(batch, num_classes).scatter_(1, y_lb.view(-1, 1).cpu(), 1).to(x_lb.device)
    all_inputs = torch.cat([x_lb, *x_ulb], dim=0)
    all_targets = torch.cat([targets_x] + [targets_u] * len(x_ulb), dim=0)
    lam, perm = lam.to(x_lb.device), perm.to(x_lb.device)
    mixed_input = lam.view(-1, 1, 1, 1) * all_inputs + (1 - lam.view(-1, 1, 1, 1)) * all_inputs[perm]
    mixed_target = lam.view(-1, 1) * all_targets + (1 - lam.view(-1, 1)) * all_targets[perm]
    mixed_input = _interleave(list(torch.split(mixed_input, batch)), batch)
    logits = [model(mixed_input[0])]
    for chunk in mixed_input[1:]:
        logits.append(_forward_keeping_bn_stats(model, chunk))
    logits = _interleave(logits, batch)
    logits_x, logits_u = logits[0], torch.cat(logits[1:], dim=0)
    loss_x = -torch.mean(torch.sum(F.log_softmax(logits_x, dim=1) * mixed_target[:batch], dim=1))
    loss_u = torch.mean((torch.softmax(logits_u, dim=1) - mixed_target[batch:]) ** 2)
    return loss_x + lambda_u * loss_u, loss_x, loss_u


class _EvalImages(Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.images[i]))


@torch.no_grad()
def reference_predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64, device="cpu") -> torch.Tensor:
    """The port's evaluation: eval mode, no_grad, fp32, batches of 64 through a DataLoader; logits on the CPU."""
    model.eval()
    outs = [model(x.to(device)).cpu() for x in DataLoader(_EvalImages(images), batch_size=batch_size)]
    model.train()
    return torch.cat(outs)


class ReferenceTrainer:
    """The whole plain step: loaders, guess, mix, three chunks, backward, Adam, weight decay, EMA, ``.item()``."""

    def __init__(self, model: nn.Module, ema_model: nn.Module, labeled, unlabeled, batch_size: int = 64, K: int = 2,
                 lr: float = 0.002, wd: float = 0.02, ema_decay: float = 0.999, alpha: float = 0.75,
                 T: float = 0.5, lambda_u: float = 75.0, device="cpu"):
        self.model, self.ema_model, self.device = model.to(device), ema_model.to(device), torch.device(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.labeled_iter = endless(labeled.images, labeled.labels, batch_size, 1)
        self.unlabeled_iter = endless(unlabeled.images, unlabeled.labels, batch_size, K)
        self.K, self.alpha, self.T, self.lambda_u = K, alpha, T, lambda_u
        self.wd, self.ema_decay = wd * lr, ema_decay

    def next_batch(self):
        """Augmented views from the PIL pipeline, on the device: (x_lb, y_lb, [x_ulb views])."""
        (x_lb,), y_lb = next(self.labeled_iter)
        x_ulb, _ = next(self.unlabeled_iter)
        return x_lb.to(self.device), y_lb.to(self.device), [u.to(self.device) for u in x_ulb]

    def compute_step(self, x_lb, y_lb, x_ulb):
        """Loss, backward, Adam, decoupled weight decay and EMA for one prepared batch; returns the losses."""
        self.model.train()
        lam, perm = draw_mixup(len(x_lb), len(x_lb) * len(x_ulb), self.alpha)
        loss, loss_x, loss_u = reference_losses(self.model, x_lb, y_lb, x_ulb, lam, perm, self.T, self.lambda_u)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for param in self.model.modules():
                if isinstance(param, (nn.Conv2d, nn.Linear)):
                    param.weight.mul_(1 - self.wd)
            for param, ema_param in zip(self.model.parameters(), self.ema_model.parameters()):
                ema_param.mul_(self.ema_decay).add_(param.detach() * (1 - self.ema_decay))
            for buf, ema_buf in zip(self.model.buffers(), self.ema_model.buffers()):
                ema_buf.copy_(buf)
        return loss_x.item(), loss_u.item()

    def step(self):
        return self.compute_step(*self.next_batch())
