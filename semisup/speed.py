"""Per-device speed defaults of the training path, each one switchable; none of them changes the math.

Measured with ``benchmarks/bench_step.py`` (README, "Speed"):

- ``torch.compile`` of the training forward and backward fuses batch norm, leaky ReLU and the residual sums into
  a few loops around the convolutions. On the 2-core CPU it saved 4-14 % of a step in our measurements and costs
  about a minute of compilation (two graphs: the chunk that updates the BN running statistics and the chunks that
  do not), so
  ``--compile`` left unset turns it on only for runs of ``COMPILE_MIN_STEPS`` steps or more, and only where its
  backend can build kernels (a C++ compiler on the CPU, Triton on CUDA). The guessing passes stay eager: compiling
  them bought nothing measurable for another 20 s of compilation.
- Host copies without waits: on CUDA a plain ``cpu_tensor.to("cuda")`` blocks the host until the GPU has finished
  everything queued before it. The few small CPU-drawn tensors of a step (sample indices, augmentation offsets,
  mixup λ and permutation) go through pinned memory without blocking, so the host keeps queueing work (not measured
  here: no GPU on the benchmark machine).
- Fused Adam: one kernel updates every parameter instead of a loop of per-tensor operations (about 5 ms less per
  step on the CPU, the same update up to rounding).
- Evaluation batch: on the CPU, batches of 1024 images spill the activations out of the caches; 128 runs about
  1.9x faster (128: 750 images/s, 1024: 395, bf16, 2 cores). CUDA keeps large batches.
"""
import os

import torch

from .config import ConfigError

COMPILE_MIN_STEPS = 20_000  # about 1,000 steps repay the compilation on the CPU; keep short runs and tests eager
EVAL_BATCH = {"cpu": 128, "cuda": 1024}


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """``t.to(device)`` for a small CPU tensor; on CUDA through pinned memory, without making the host wait."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def compile_problem(device: torch.device):
    """Why torch.compile's default backend (Inductor) cannot build kernels for ``device`` here, or None."""
    import importlib.util
    import shutil

    import torch._dynamo
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "torch.compile on CUDA needs the triton package"
    cxx = os.environ.get("CXX") or "g++"
    if device.type == "cpu" and shutil.which(cxx) is None:
        return f"torch.compile on the CPU needs a C++ compiler ({cxx} not found; set CXX)"
    if device.type not in ("cpu", "cuda"):
        return f"no torch.compile backend for {device.type} here"
    return None


def resolve_compile(choice, device: torch.device, steps: int) -> bool:
    """``--no-compile`` wins; ``--compile`` is refused up front where it cannot work; unset, long runs compile where
    a backend is available."""
    if choice is False or (choice is None and steps < COMPILE_MIN_STEPS):
        return False
    problem = compile_problem(device)
    if problem and choice:
        raise ConfigError(f"--compile: {problem}; run with --no-compile")
    return problem is None


def eval_batch_size(requested: int, device) -> int:
    """``--eval-batch-size``, or the device's default when it is 0."""
    if requested > 0:
        return requested
    device = torch.device(device) if device is not None else torch.device("cpu")
    return EVAL_BATCH.get(device.type, EVAL_BATCH["cpu"])


def adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused implementation on the CPU and CUDA (same update as the loop, up to rounding)."""
    return torch.optim.Adam(params, lr=lr, fused=torch.device(device).type in ("cpu", "cuda"))
