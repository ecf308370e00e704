"""Checkpoint files: a save failing halfway, a crash between its stages, bounded disk use, flipped bits, and
untrusted files (a pickled code payload must be refused and never run; every torch.load is weights-only)."""
import ast
import errno
import io
import os
import pickle
import zipfile

import pytest
import torch

from semisup import checkpoint
from semisup.checkpoint import CheckpointError, load_checkpoint, load_latest, save_checkpoint

from conftest import ROOT


def tiny_state(step):
    return {"model": {"w": torch.full((3,), float(step))}, "model_name": "tiny", "arch": {}, "step": step}


def test_save_failing_halfway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = str(tmp_path)
    save_checkpoint(tiny_state(1), folder)
    before = (tmp_path / "last.pt").read_bytes()
    real_save = torch.save

    def disk_full(obj, f):
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tiny_state(2), folder)
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["last.pt"]  # the torn temporary file is gone
    state, path = load_latest(folder)
    assert state["step"] == 1 and path.endswith("last.pt")


class _Crash(Exception):
    pass


@pytest.mark.parametrize("stage", ["written", "rotated"])
def test_crash_after_the_write_resumes_from_the_new_checkpoint(tmp_path, monkeypatch, stage):
    """A crash once the new file is complete (before or after rotating last.pt away) loses nothing."""
    folder = str(tmp_path)
    save_checkpoint(tiny_state(1), folder)

    def crash(at):
        if at == stage:
            raise _Crash(at)

    monkeypatch.setattr(checkpoint, "_fault", crash)
    with pytest.raises(_Crash):
        save_checkpoint(tiny_state(2), folder)
    state, path = load_latest(folder)
    assert state["step"] == 2 and path.endswith("last.pt.new")
    monkeypatch.setattr(checkpoint, "_fault", lambda at: None)
    save_checkpoint(tiny_state(3), folder)
    assert load_checkpoint(str(tmp_path / "last.pt"))["step"] == 3
    assert not any(name.endswith((".new", ".tmp")) for name in os.listdir(folder))


def test_keep_checkpoints_bounds_the_files_on_disk(tmp_path):
    folder = str(tmp_path)
    for step in range(1, 7):
        save_checkpoint(tiny_state(step), folder, keep=2)
    steps = {name: load_checkpoint(str(tmp_path / name))["step"] for name in os.listdir(folder)}
    assert steps == {"last.pt": 6, "last-1.pt": 5, "last-2.pt": 4}
    save_checkpoint(tiny_state(7), folder, keep=1)  # a smaller --keep-checkpoints on resume deletes the extra
    steps = {name: load_checkpoint(str(tmp_path / name))["step"] for name in os.listdir(folder)}
    assert steps == {"last.pt": 7, "last-1.pt": 6}
    with pytest.raises(ValueError, match="at least 1"):
        save_checkpoint(tiny_state(8), folder, keep=0)


def _flip_a_tensor_byte(path):
    """Flip one byte in the middle of the largest tensor stored in a checkpoint archive."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        offset = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))


def test_bit_flip_in_a_tensor_is_detected_and_skipped(tmp_path):
    folder = str(tmp_path)
    save_checkpoint(tiny_state(1), folder)
    save_checkpoint({**tiny_state(2), "model": {"w": torch.arange(4096.0)}}, folder)
    _flip_a_tensor_byte(str(tmp_path / "last.pt"))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(str(tmp_path / "last.pt"))
    warnings = []
    state, path = load_latest(folder, warn=warnings.append)
    assert state["step"] == 1 and path.endswith("last-1.pt")
    assert len(warnings) == 1 and "checksum mismatch" in warnings[0]


class _Payload:
    """A pickle that creates a file when loaded: what a malicious checkpoint would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_checkpoint_with_a_code_payload_is_refused_and_never_runs(tmp_path):
    marker = str(tmp_path / "payload-ran")
    plain, zipped = tmp_path / "plain.pt", tmp_path / "zipped.pt"
    plain.write_bytes(pickle.dumps(_Payload(marker)))
    torch.save({"format": checkpoint.FORMAT, "model": _Payload(marker), "model_name": "x", "arch": {}},
               str(zipped))
    for path in (plain, zipped):
        with pytest.raises(CheckpointError):
            load_checkpoint(str(path))
        assert not os.path.exists(marker)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(str(zipped))
    control = str(tmp_path / "control")
    pickle.loads(pickle.dumps(_Payload(control)))  # the same payload, unpickled plainly, does run
    assert os.path.exists(control)


def _torch_load_calls(path):
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            yield node


def test_every_torch_load_in_the_project_is_weights_only():
    sources = [os.path.join(d, f) for d, _, files in os.walk(ROOT) for f in files
               if f.endswith(".py") and not any(p in d for p in (".git", "venv", "tests", "build"))]
    calls = [(path, call) for path in sources for call in _torch_load_calls(path)]
    assert calls, "expected at least the checkpoint loader"
    for path, call in calls:
        flags = {k.arg: getattr(k.value, "value", None) for k in call.keywords}
        assert flags.get("weights_only") is True, f"{path}:{call.lineno} calls torch.load without weights_only"
