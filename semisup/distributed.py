"""What several processes (torchrun) must agree on: the batch split, RNG states, loss means, the summary.

Every function is a no-op (or the single-process answer) when the run has one process, so the training loop calls
them unconditionally. Functions marked *collective* must be called by every rank at the same point.
"""
import atexit
import os
import sys
from typing import List, NoReturn

import torch
import torch.distributed as dist

from .config import ConfigError


def per_rank_batch(batch_size: int, world_size: int, accum_steps: int) -> int:
    """Labeled images per process and step: ``--batch-size`` is the global batch, split evenly over the ranks."""
    per_rank, rest = divmod(batch_size, world_size)
    if rest or per_rank % accum_steps:
        raise ConfigError(f"--batch-size {batch_size} is the global batch: it must split evenly over "
                          f"{world_size} process(es) and then into --accum-steps {accum_steps} micro-batches "
                          f"(batch-size must be a multiple of {world_size * accum_steps})")
    return per_rank


def _active(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


def rng_state(device: torch.device) -> dict:
    """This process's generator states: the CPU one (augmentation, mixup) and, on CUDA, its device's."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def gather_rng_states(device: torch.device, world_size: int) -> List[dict]:
    """*Collective.* Every rank's RNG state, indexed by rank, so a resumed run replays every rank's draws."""
    return gather_per_rank(rng_state(device), world_size)


def gather_per_rank(mine, world_size: int) -> list:
    """*Collective.* Every rank's ``mine`` (any picklable object), indexed by rank."""
    if not _active(world_size):
        return [mine]
    objects = [None] * world_size
    dist.all_gather_object(objects, mine)
    return objects


def any_rank(flag: bool, world_size: int) -> bool:
    """*Collective.* Whether ``flag`` is true on at least one rank."""
    return any(gather_per_rank(bool(flag), world_size))


def restore_rng_state(saved, rank: int, world_size: int, device: torch.device) -> None:
    """Set this rank's generators from a checkpoint's list of per-rank states (a bare dict: one process)."""
    states = [saved] if isinstance(saved, dict) else list(saved)
    if len(states) != world_size:
        raise ConfigError(f"the checkpoint was written by {len(states)} process(es) and cannot replay exactly with "
                          f"{world_size}; resume with the same number (torchrun --nproc-per-node "
                          f"{len(states)}), or start afresh with --force-new")
    state = states[rank]
    torch.set_rng_state(state["torch"].cpu())  # CPU byte tensors, whatever map_location the load used
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def mean_over_ranks(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """*Collective.* The mean of ``t`` over the ranks (in place), so every rank logs and checks the same loss."""
    if _active(world_size):
        dist.all_reduce(t)
        t /= world_size
    return t


def gather_rows(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """*Collective.* Every rank's rows of ``t`` (the same shape on every rank), concatenated in rank order: what
    one process with the global batch would hold. No gradient flows through it."""
    if not _active(world_size):
        return t
    parts = [torch.empty_like(t) for _ in range(world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def broadcast_from_main(obj, world_size: int):
    """*Collective.* Rank 0's ``obj`` on every rank."""
    if not _active(world_size):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world_size: int) -> None:
    """*Collective.* Wait until every rank gets here (e.g. until rank 0 has prepared the run folder)."""
    if _active(world_size):
        dist.barrier()


def shutdown() -> None:
    """End the process group started for torchrun, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """Leave a torchrun process with ``code`` without finalising the interpreter (one process: ``sys.exit``).

    DDP keeps gloo's process group, and with it gloo's worker threads, alive past ``destroy_process_group``. Such a
    thread may still be dropping the last collective's tensors, which takes the GIL, when Python starts finalising;
    Python then ends the thread with ``pthread_exit``, whose unwinding through a ``noexcept`` destructor calls
    ``std::terminate`` ("terminate called without an active exception"), and the rank dies with SIGABRT after the
    run is saved. Here the exit handlers run and the output is flushed as at a normal exit, then ``os._exit`` ends
    the process without the finalisation that thread could be caught in.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
