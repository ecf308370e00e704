"""Checkpoints: written atomically (temp file, fsync, rename), read with ``weights_only=True``.

Saving writes the new checkpoint completely to ``last.pt.new`` (through ``last.pt.new.tmp``, fsynced, renamed),
then rotates ``last.pt`` to ``last-1.pt`` (and older ones further, up to ``keep``), then renames the new file to
``last.pt``. A crash at any moment therefore leaves at least one whole checkpoint; the newest whole one is found by
``load_latest``, which skips (with a warning) any that is truncated or corrupt. Checkpoints older than ``keep``
are deleted, so a run folder holds at most ``keep + 1`` checkpoints, plus one being written.

Loading never runs code from the file: ``torch.load(..., weights_only=True)`` refuses any pickled object other
than tensors and plain containers, and the zip archive's CRC-32 checksums are verified first, so flipped bits in a
tensor are reported instead of being trained on.

``SEMISUP_FAULT=<stage>[:<n>]`` (crash tests only) makes the process kill itself with SIGKILL at ``<stage>`` of
its ``n``-th save: ``write`` (temporary file half written), ``written`` (new file complete, nothing rotated) or
``rotated`` (previous checkpoint moved to ``last-1.pt``, ``last.pt`` not yet replaced).
"""
import os
import re
import signal
import sys
import warnings
import zipfile
from typing import Callable, List, Optional, Tuple

import torch

from .config import first_line

FORMAT = "semisup-checkpoint"
VERSION = 1
LAST = "last.pt"
NEW_SUFFIX = ".new"
FAULT_ENV = "SEMISUP_FAULT"
FAULT_STAGES = ("write", "written", "rotated")
_FAULT_AFTER_BYTES = 4096  # the 'write' fault strikes once this much of the temporary file is on disk
_saves = 0  # atomic_save calls in this process, for SEMISUP_FAULT's <n>


class CheckpointError(ValueError):
    """A file that is not a usable semisup checkpoint."""


def _fault(stage: str) -> None:
    """Die like ``kill -9`` if $SEMISUP_FAULT names this stage of this save (crash tests; unset otherwise)."""
    spec = os.environ.get(FAULT_ENV, "")
    want, _, nth = spec.partition(":")
    if want == stage and _saves == int(nth or 1):
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class _TornWrite:
    """File wrapper that fires the ``write`` fault once part of the checkpoint has reached the disk."""

    def __init__(self, f):
        self.f, self.written = f, 0

    def write(self, data) -> int:
        n = self.f.write(data)
        self.written += n
        if self.written >= _FAULT_AFTER_BYTES:
            self.f.flush()
            os.fsync(self.f.fileno())
            _fault("write")
        return n

    def flush(self) -> None:
        self.f.flush()


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
    global _saves
    _saves += 1
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, _TornWrite(f) if os.environ.get(FAULT_ENV) else f)
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


def _remove_older_than(folder: str, keep: int) -> None:
    """Delete last-<i>.pt for i > keep (left by an earlier run with a larger --keep-checkpoints)."""
    for name in os.listdir(folder):
        match = re.fullmatch(r"last-(\d+)\.pt", name)
        if match and int(match.group(1)) > keep:
            os.remove(os.path.join(folder, name))


def save_checkpoint(state: dict, folder: str, keep: int = 1) -> str:
    """Write ``state`` as the new last.pt, keeping the ``keep`` checkpoints before it (last-1.pt first)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (got {keep}): the previous checkpoint is the fallback")
    paths = rotation(folder, keep)
    new = paths[0] + NEW_SUFFIX
    atomic_save({"format": FORMAT, "version": VERSION, **state}, new)
    _fault("written")
    for older, newer in zip(reversed(paths[1:]), reversed(paths[:-1])):
        if os.path.exists(newer):
            os.replace(newer, older)
    _fault("rotated")
    os.replace(new, paths[0])
    _fsync_dir(folder)
    _remove_older_than(folder, keep)
    return paths[0]


def step_path(folder: str, step: int) -> str:
    """RUN/step<K>.pt, the state kept at step K by ``--keep-step``: outside the rotation, so never deleted."""
    return os.path.join(folder, f"step{step}.pt")


def save_step_checkpoint(state: dict, folder: str) -> str:
    """Write ``state`` as step<K>.pt (K = its step), atomically: a rewind point that the rotation leaves alone."""
    path = step_path(folder, int(state["step"]))
    atomic_save({"format": FORMAT, "version": VERSION, **state}, path)
    return path


def _verify_archive(path: str) -> None:
    """Check every member's CRC-32: torch.load itself would read a bit-flipped tensor without complaint."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable semisup checkpoint (not a complete zip archive: "
                              f"{err})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint (checksum mismatch in {bad})")


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load and check a semisup checkpoint; never unpickles code (weights_only=True)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    _verify_archive(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # arbitrary bytes make torch.load raise almost any type; all mean "unreadable"
        if "Weights only load failed" in str(err):
            raise CheckpointError(f"{path}: refused: it holds pickled Python objects other than tensors and "
                                  f"plain data (loading it could run code)") from None
        raise CheckpointError(f"{path}: not a readable semisup checkpoint ({first_line(err)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a semisup checkpoint (no '{FORMAT}' marker)")
    missing = [k for k in ("model", "model_name", "arch") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: semisup checkpoint lacks {', '.join(missing)}")
    return state


def load_latest(folder: str, keep: int = 1, map_location="cpu",
                warn: Optional[Callable[[str], None]] = None) -> Tuple[Optional[dict], Optional[str]]:
    """The newest readable checkpoint in ``folder``, or (None, None) when it holds none at all.

    Falling back past unreadable ones reports each through ``warn`` (default: ``warnings.warn``); if checkpoints
    exist but none is readable, CheckpointError naming every reason (starting afresh would overwrite them).
    """
    paths = rotation(folder, keep)
    found = [p for p in [paths[0] + NEW_SUFFIX] + paths if os.path.exists(p)]
    errors = []
    for path in found:
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        for error in errors:
            (warn or warnings.warn)(f"skipping unreadable checkpoint: {error}")
        return state, path
    if errors:
        raise CheckpointError(f"no readable checkpoint in {folder} ({'; '.join(errors)})")
    return None, None


def model_from_checkpoint(state: dict, weights: str = "ema", source: str = "checkpoint",
                          keep_masks: bool = False) -> torch.nn.Module:
    """The model of a loaded checkpoint, rebuilt at its saved shape (``arch``) with its ``ema`` or ``raw`` weights,
    in eval mode on the CPU; ``keep_masks`` re-attaches the pruning masks saved beside the weights.

    The weights are the effective ones (pruned weights stored as zeros), so without ``keep_masks`` the model
    computes what the masked model computed. Any shape or key mismatch is one CheckpointError naming ``source``.
    """
    from .masks import load_masked
    from .models import model_from_arch

    key = "ema" if weights == "ema" else "model"
    if not isinstance(state.get(key), dict):
        hint = " (try --weights raw)" if key == "ema" else ""
        raise CheckpointError(f"{source}: holds no {weights} weights{hint}")
    if not isinstance(state["arch"], dict):
        raise CheckpointError(f"{source}: its 'arch' entry is not a dictionary")
    try:
        model = model_from_arch(state["model_name"], state["arch"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: cannot rebuild model {state['model_name']!r} with arch "
                              f"{state['arch']}: {err}") from None
    try:
        load_masked(model, state[key], state.get("masks") or {} if keep_masks else {})
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: the weights do not fit the saved shape ({first_line(err)})") from None
    return model.eval()
