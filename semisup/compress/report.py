"""What a compression bought: parameters, MACs, sparsity, CPU latency and accuracy, before and after.

MACs (multiply-accumulates per image) come from PyTorch's own FLOP counter (``FlopCounterMode``), halved: it
counts a multiply-accumulate of a conv or linear layer as two FLOPs. Batch norm and activations are not counted.
Dense kernels do the same work for a zero weight as for any other, so masks change ``sparsity`` and nothing else
here; only physically removed channels lower ``params``, ``macs`` and ``latency_ms``.
"""
import statistics
import time
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .masks import effective_weight, sparsity

LATENCY_BATCHES = (1, 256)


def count_params(model: nn.Module) -> int:
    """Every trainable number, zeros included (a masked weight still occupies its place)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_nonzero_params(model: nn.Module) -> int:
    """Parameters that are not exactly zero, a masked weight counted after its mask."""
    total = 0
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            total += int(((effective_weight(m) if name == "weight_orig" else p) != 0).sum())
    return total


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32)) -> int:
    """Multiply-accumulates for one image: FlopCounterMode's FLOPs / 2."""
    ref = next(model.parameters())
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=ref.device, dtype=ref.dtype))
    model.train(was_training)
    return counter.get_total_flops() // 2


@torch.inference_mode()
def latency_ms(model: nn.Module, batch: int, repeats: int = 3, warmup: int = 1,
               input_shape: Sequence[int] = (3, 32, 32)) -> float:
    """Median wall time of an eval-mode forward pass of ``batch`` images on the CPU, in milliseconds."""
    model = model.eval()
    x = torch.randn(batch, *input_shape)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


def measure(model: nn.Module, batches: Sequence[int] = LATENCY_BATCHES, repeats: int = 3) -> Dict[str, object]:
    """params, nonzero params, MACs, sparsity and CPU latency of one (CPU) model."""
    return {"params": count_params(model), "nonzero_params": count_nonzero_params(model),
            "macs": count_macs(model), "sparsity": sparsity(model),
            "latency_ms": {f"batch_{b}": latency_ms(model, b, repeats) for b in batches}}


def before_after(before: Dict[str, object], after: Dict[str, object]) -> Dict[str, object]:
    """{"field": {"before": …, "after": …}} for every measured field (latency per batch size)."""
    out: Dict[str, object] = {}
    for key, value in before.items():
        if isinstance(value, dict):
            out[key] = {k: {"before": v, "after": after[key][k]} for k, v in value.items()}
        else:
            out[key] = {"before": value, "after": after[key]}
    return out


def _ratio(before: float, after: float) -> str:
    return f"{before / after:.2f}x" if after else "-"


def format_report(report: Dict[str, object]) -> str:
    """A small before/after table for the terminal."""
    rows = [("params", report["params"]), ("nonzero params", report["nonzero_params"]), ("MACs", report["macs"]),
            ("sparsity", report["sparsity"])]
    rows += [(f"latency ms, {k.replace('_', ' ')}", v) for k, v in report["latency_ms"].items()]
    acc: Optional[dict] = report.get("test_acc")
    if acc and acc.get("before") is not None:
        rows.append(("test accuracy %", acc))
    lines = [f"{'':28s}{'before':>14s}{'after':>14s}{'before/after':>14s}"]
    for name, cell in rows:
        b, a = cell["before"], cell["after"]
        fmt = (lambda v: f"{v:14.4f}") if isinstance(b, float) else (lambda v: f"{v:14,d}")
        ratio = _ratio(b, a) if name not in ("sparsity", "test accuracy %") else ""
        lines.append(f"{name:28s}{fmt(b)}{fmt(a)}{ratio:>14s}")
    return "\n".join(lines)
