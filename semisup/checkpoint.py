"""Checkpoints: written atomically (temp file, fsync, rename), read with ``weights_only=True``.

The previous checkpoint is rotated to ``last-1.pt`` (and older ones further) only once the new one is complete, so
a crash at any moment leaves at least one whole checkpoint, and a corrupt ``last.pt`` falls back to the previous.
"""
import os
import pickle
import warnings
from typing import List, Optional, Tuple

import torch

FORMAT = "semisup-checkpoint"
VERSION = 1
LAST = "last.pt"


class CheckpointError(ValueError):
    """A file that is not a usable semisup checkpoint."""


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj, path: str) -> None:
    """torch.save to ``path`` so that readers see either the old file or the complete new one."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _fsync_dir(folder)


def rotation(folder: str, keep: int) -> List[str]:
    """[last.pt, last-1.pt, …, last-keep.pt]: newest first."""
    return [os.path.join(folder, LAST)] + [os.path.join(folder, f"last-{i}.pt") for i in range(1, keep + 1)]


def save_checkpoint(state: dict, folder: str, keep: int = 1) -> str:
    """Write ``state`` as the new last.pt, keeping ``keep`` older checkpoints (the previous one first)."""
    paths = rotation(folder, keep)
    tmp_final = paths[0] + ".new"
    atomic_save({"format": FORMAT, "version": VERSION, **state}, tmp_final)
    for older, newer in zip(reversed(paths[1:]), reversed(paths[:-1])):
        if os.path.exists(newer):
            os.replace(newer, older)
    os.replace(tmp_final, paths[0])
    _fsync_dir(folder)
    return paths[0]


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load and check a semisup checkpoint; never unpickles code (weights_only=True)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable semisup checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a semisup checkpoint (no '{FORMAT}' marker)")
    missing = [k for k in ("model", "model_name", "arch") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: semisup checkpoint lacks {', '.join(missing)}")
    return state


def load_latest(folder: str, keep: int = 1, map_location="cpu") -> Tuple[Optional[dict], Optional[str]]:
    """The newest readable checkpoint in ``folder`` (warning about each unreadable one), or (None, None)."""
    found = [p for p in rotation(folder, keep) if os.path.exists(p)]
    for path in found:
        try:
            return load_checkpoint(path, map_location), path
        except CheckpointError as err:
            warnings.warn(f"skipping unreadable checkpoint: {err}")
    return None, None
