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

from ..masks import effective_weight, sparsity

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


def latencies_ms(models: Dict[str, nn.Module], batch: int, repeats: int = 3, warmup: int = 1,
                 memory_format=torch.contiguous_format, dtype=None,
                 input_shape: Sequence[int] = (3, 32, 32)) -> Dict[str, float]:
    """Median wall time (ms) of an eval-mode forward pass of ``batch`` images on the CPU, for each model.

    The models take turns within every repeat, so a change of machine load hits all of them alike. fp32 unless
    ``dtype`` (autocast, e.g. torch.bfloat16); the models are converted to ``memory_format`` in place.
    """
    models = {k: m.eval().to(memory_format=memory_format) for k, m in models.items()}  # not in inference mode
    x = torch.randn(batch, *input_shape).to(memory_format=memory_format)
    times: Dict[str, list] = {k: [] for k in models}
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        for model in models.values():
            for _ in range(warmup):
                model(x)
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(1000.0 * (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in times.items()}


def sizes(model: nn.Module) -> Dict[str, object]:
    """params, nonzero params, MACs per image and sparsity of one model."""
    return {"params": count_params(model), "nonzero_params": count_nonzero_params(model),
            "macs": count_macs(model), "sparsity": sparsity(model)}


def compare(before: nn.Module, after: nn.Module, batches: Sequence[int] = LATENCY_BATCHES, repeats: int = 3,
            memory_format=torch.contiguous_format) -> Dict[str, object]:
    """Every report field as {"before": …, "after": …}; latency per batch size, the two models timed in turn."""
    out = before_after(sizes(before), sizes(after))
    out["latency_ms"] = {f"batch_{b}": latencies_ms({"before": before, "after": after}, b, repeats,
                                                    memory_format=memory_format) for b in batches}
    return out


def before_after(before: Dict[str, object], after: Dict[str, object]) -> Dict[str, object]:
    """{"field": {"before": …, "after": …}} for every field."""
    return {key: {"before": value, "after": after[key]} for key, value in before.items()}


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
