"""Helpers for the accumulation and DDP tests: a batch-norm-free model and a Trainer built without train.py.

Gradient accumulation and data parallelism are exact only where the model does not look across rows: batch norm in
training mode normalises each micro-batch (each rank) with its own statistics. Replacing every batch norm with an
identity gives a model whose gradients must match the undivided batch to rounding error.
"""
import torch
import torch.nn as nn

from semisup.batch import Batch
from semisup.config import Config, validate
from semisup.data import Dataset, SSLData, prepare_data
from semisup.engine import Trainer
from semisup.models import create_model
from semisup.runtime import Runtime

TINY_FIELDS = dict(model="wrn-10-tiny", n_labeled=40, n_valid=100, batch_size=8, threads=1, progress=False,
                   amp="none", channels_last="off", eval_batch_size=64)


def strip_bn(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by an identity, in place."""
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(model, name, nn.Identity())
        else:
            strip_bn(child)
    return model


def tiny_config(data_dir: str, **overrides) -> Config:
    return validate(Config(data_dir=data_dir, **{**TINY_FIELDS, **overrides}))


def tiny_model(seed: int, bn: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("wrn-10-tiny")
    return model if bn else strip_bn(model)


def single_process_trainer(cfg: Config, model: nn.Module, amp_dtype=None) -> Trainer:
    """A one-process Trainer on the CPU; the RNG is seeded as train.py seeds rank 0."""
    rt = Runtime(device=torch.device("cpu"), amp_dtype=amp_dtype, memory_format=torch.contiguous_format)
    data = prepare_data(cfg.data_dir, cfg.n_labeled, cfg.n_valid, cfg.seed)
    trainer = Trainer(cfg, rt, data, model)
    torch.manual_seed(cfg.seed * 1000)
    return trainer


def straight_and_resumed(cfg: Config):
    """(a Trainer after three steps in one go, one after two steps, a checkpoint, a new Trainer and one more step,
    the checkpoint's state): an exact resume makes their weights, EMA and algorithm state equal."""
    straight = single_process_trainer(cfg, tiny_model(2))
    for _ in range(3):
        straight.train_step()
    first = single_process_trainer(cfg, tiny_model(2))
    for _ in range(2):
        first.train_step()
    state = first.state_dict()  # before the next Trainer reseeds the generator
    resumed = single_process_trainer(cfg, tiny_model(5))
    resumed.load_state_dict(state)
    resumed.train_step()
    return straight, resumed, state


def concat_rank_batches(batches, K: int) -> Batch:
    """The global batch whose micro-batches, in order, are each rank's micro-batches in rank order.

    Rows are [labeled of rank 0, rank 1, …; view 1 of rank 0, rank 1, …; …], the layout ``MixMatch.micro_batch`` splits.
    """
    n_lb = batches[0].n_lb

    def part(t: torch.Tensor, v: int) -> torch.Tensor:
        return t[v * n_lb:(v + 1) * n_lb]

    def cat(name: str) -> torch.Tensor:
        return torch.cat([part(getattr(b, name), v) for v in range(K + 1) for b in batches])

    return Batch(cat("x"), cat("targets"), n_lb * len(batches), n_lb * len(batches))


def _images(n: int) -> Dataset:
    return Dataset(torch.zeros(n, 3, 32, 32, dtype=torch.uint8), torch.arange(n) % 10)


def backward_in_micro_batches(model: nn.Module, x_mix: torch.Tensor, t_mix: torch.Tensor, n_lb: int, K: int,
                              lambda_u: float, accum_steps: int = 1, algorithm: str = "mixmatch"):
    """The Trainer's micro-batch loop (``Trainer.accumulate``) on given mixed rows: (loss_x, loss_u)."""
    cfg = validate(Config(**{**TINY_FIELDS, "K": K, "batch_size": n_lb, "accum_steps": accum_steps,
                             "algorithm": algorithm}))
    rt = Runtime(device=torch.device("cpu"), amp_dtype=None, memory_format=torch.contiguous_format)
    data = SSLData(labeled=_images(n_lb), unlabeled=_images(n_lb), valid=_images(0), test=_images(0), split=None,
                   num_classes=t_mix.shape[1])
    terms = Trainer(cfg, rt, data, model).accumulate(Batch(x_mix, t_mix, n_lb, n_lb), {"u": lambda_u})
    return terms["x"], terms["u"]
