"""A decoded dataset cached beside its source files, so that large sets are decoded once.

SVHN's .mat files (604,388 images with extra) and STL-10's column-major binaries (105,000 images at 96x96) take
from tens of seconds to minutes to decode; a folder of JPEGs longer. The decoded uint8 tensors are saved with
``torch.save`` into ``<data>/.semisup-cache/<name>.pt`` and read back memory-mapped, in seconds.

The cache is written atomically (a temporary file of this process, fsynced, then ``os.replace``), so a crash never
leaves a half-written cache under the real name. It is checked on load: its format marker, the stamp of the
source files (their names, sizes and modification times: a changed source means a stale cache) and the shape and
dtype of every tensor. A cache that fails any check is decoded afresh and replaced; it is never trusted.
"""
import os
import sys
import warnings
from typing import Dict, Optional, Sequence, Tuple

import torch

FORMAT = "semisup-data-cache"
VERSION = 1
CACHE_DIR = ".semisup-cache"


def cache_path(folder: str, name: str) -> str:
    return os.path.join(folder, CACHE_DIR, f"{name}.pt")


def stamp(paths: Sequence[str], root: str = "") -> list:
    """[relative name, size in bytes, mtime in ns] of each source file: what the cache was decoded from."""
    out = []
    for path in paths:
        st = os.stat(path)
        out.append([os.path.relpath(path, root) if root else os.path.basename(path), st.st_size, st.st_mtime_ns])
    return out


def _describe(tensors: Dict[str, torch.Tensor]) -> Dict[str, list]:
    return {k: [str(v.dtype), list(v.shape)] for k, v in tensors.items()}


def load(path: str, expected_stamp: list) -> Tuple[Optional[dict], str]:
    """(the cached {"tensors", "meta"}, "") when ``path`` is a sound cache of these sources, else (None, why)."""
    if not os.path.isfile(path):
        return None, "no cache yet"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            entry = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, ValueError, EOFError) as err:
        return None, f"unreadable: {type(err).__name__}"
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("version") != VERSION:
        return None, "not a semisup data cache"
    if entry.get("stamp") != expected_stamp:
        return None, "the source files changed"
    tensors = entry.get("tensors")
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        return None, "no tensors"
    if _describe(tensors) != entry.get("shapes"):
        return None, "tensor shapes or dtypes differ from the recorded ones"
    return {"tensors": tensors, "meta": entry.get("meta", {})}, ""


def save(path: str, tensors: Dict[str, torch.Tensor], source_stamp: list, meta: Optional[dict] = None) -> None:
    """Write the cache atomically; a folder that cannot be written costs a warning, not the run."""
    entry = {"format": FORMAT, "version": VERSION, "stamp": source_stamp, "shapes": _describe(tensors),
             "tensors": {k: v.contiguous() for k, v in tensors.items()}, "meta": meta or {}}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        print(f"warning: could not write the data cache {path} ({err}); the data will be decoded again next time",
              file=sys.stderr)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check(tensors: Dict[str, torch.Tensor], images: str, labels: str, size: Tuple[int, int]) -> bool:
    """Whether ``tensors[images]`` is uint8 [N, 3, H, W] of ``size`` and ``tensors[labels]`` int64 [N]."""
    x, y = tensors.get(images), tensors.get(labels)
    return (x is not None and y is not None and x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3
            and tuple(x.shape[2:]) == tuple(size) and y.dtype == torch.int64 and y.shape == (len(x),))


def cached(path: str, source_stamp: list, decode, valid, pending: list):
    """(tensors, meta) from the cache at ``path`` when it is sound and ``valid``, else from ``decode()``.

    A fresh decode queues its cache write on ``pending`` (run once the split has been checked) rather than
    writing it at once, so that a command refused later leaves nothing behind.
    """
    hit, why = load(path, source_stamp)
    if hit is not None and valid(hit["tensors"]):
        return hit["tensors"], hit["meta"]
    tensors, meta = decode()

    def write():
        save(path, tensors, source_stamp, meta)
        if os.path.isfile(path):
            reason = "" if why == "no cache yet" else f" (the old one: {why})"
            print(f"note: decoded images cached in {path}{reason}; later runs read them from there",
                  file=sys.stderr)

    pending.append(write)
    return tensors, meta
