"""Where and how the step runs: device, threads, precision, memory format, processes (torchrun), and the
per-device speed defaults of the training path, each one switchable and none of them changing the math.

- ``torch.compile`` of the training forward and backward fuses batch norm, leaky ReLU and the residual sums into a
  few loops around the convolutions. It costs about a minute of compilation (two graphs: the chunk that updates the
  BN running statistics and the chunks that do not) and repays it only over long runs, so ``--compile`` left unset
  turns it on for runs of ``COMPILE_MIN_STEPS`` steps or more, and only where its backend can build kernels (a C++
  compiler on the CPU, Triton on CUDA). The guessing passes stay eager: compiling them bought nothing measurable.
- Host copies without waits: on CUDA a plain ``cpu_tensor.to("cuda")`` blocks the host until the GPU has finished
  everything queued before it, so the few small CPU-drawn tensors of a step (sample indices, augmentation offsets,
  mixup λ and permutation) go through pinned memory without blocking.
- Fused Adam: one kernel updates every parameter instead of a loop of per-tensor operations (the same update up to
  rounding).
- Evaluation batch: on the CPU, large batches spill the activations out of the caches, so the CPU default is small;
  CUDA keeps large batches.

docs/speed.md has the measured effect of each, with the command that measures it (``benchmarks/bench_step.py``).
"""
import importlib.util
import os
import platform
import shutil
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import Config, ConfigError
from .distributed import per_rank_batch

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


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: object  # torch.bfloat16, torch.float16 or None
    memory_format: torch.memory_format
    rank: int = 0
    world_size: int = 1
    compile: bool = False  # torch.compile the training forward and backward (semisup.speed.resolve_compile)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def precision(self) -> str:
        """fp32, bf16 or fp16: what the forward passes compute in (guesses and losses are fp32 in every case)."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def _cpu_info() -> dict:
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def device_name(device: torch.device) -> str:
    """What ran the numbers: the GPU's name, or the CPU's with whether it has native bf16 (AVX512-BF16), which
    decides its bf16 speed; measured numbers are only comparable on the same kind."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    info = _cpu_info()
    name = info.get("model name") or platform.processor() or platform.machine()
    flags = info.get("flags", "").split()
    kind = "avx512_bf16" if "avx512_bf16" in flags else ("avx2, no avx512_bf16" if "avx2" in flags else "")
    return f"{name} ({kind}, {torch.get_num_threads()} threads)" if kind else name


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but CUDA is not available (use --device auto or cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def resolve_aug_workers(workers: int, device: str) -> int:
    """--aug-workers -1: none on the CPU (the training threads use every core), min(8, cores - 1) with CUDA."""
    if workers >= 0:
        return workers
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return min(8, max((os.cpu_count() or 1) - 1, 0)) if cuda else 0


def cpu_has_fast_bf16() -> bool:
    """bf16 autocast pays off on CPUs with native bf16 (AVX512-BF16 / AMX), which oneDNN reports."""
    probe = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def resolve_amp(mode: str, device: torch.device):
    if mode == "none":
        return None
    if mode == "fp16":  # on the CPU too (slow there, but it runs the loss-scaling path where no GPU is at hand)
        return torch.float16
    if mode == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def resolve_memory_format(mode: str, device: torch.device) -> torch.memory_format:
    on = mode == "on" or (mode == "auto" and (device.type == "cuda" or torch.backends.mkldnn.is_available()))
    return torch.channels_last if on else torch.contiguous_format


def check_sync_bn(sync_bn: bool, device: torch.device, world_size: int) -> None:
    if sync_bn and world_size > 1 and device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA devices: PyTorch's SyncBatchNorm does not run on the CPU")


def init_distributed(device: torch.device):
    """(rank, world_size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size()


def make_runtime(cfg: Config) -> Runtime:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    per_rank_batch(cfg.batch_size, launched, cfg.accum_steps)
    check_sync_bn(cfg.sync_bn, device, launched)
    compile_ = resolve_compile(cfg.compile, device, cfg.steps)
    rank, world = init_distributed(device)
    return Runtime(device=device, amp_dtype=resolve_amp(cfg.amp, device),
                   memory_format=resolve_memory_format(cfg.channels_last, device), rank=rank, world_size=world,
                   compile=compile_)
