"""Where and how the step runs: device, threads, precision, memory format, processes (torchrun)."""
import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import Config, ConfigError
from .distributed import per_rank_batch
from .speed import resolve_compile


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

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but CUDA is not available (use --device auto or cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


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
