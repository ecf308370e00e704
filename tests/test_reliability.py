"""Crashes, a damaged last.pt, non-finite losses, TensorBoard flushing and flat memory over a run.

The kill -9 test runs train.py in subprocesses (a tiny model on generated data) and kills it from outside and,
through SEMISUP_FAULT, inside a checkpoint write; the rerun must end exactly where an uninterrupted run ends.
"""
import gc
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from semisup import checkpoint, runner
from semisup.checkpoint import load_checkpoint
from semisup.config import parse_args
from semisup.data import prepare_data
from semisup.engine import Trainer
from semisup.guard import LossGuard, NonFiniteLoss, first_non_finite
from semisup.models import create_model
from semisup.runtime import make_runtime

from conftest import ROOT, TINY

TRAIN = os.path.join(ROOT, "train.py")
# wall-clock numbers: the only fields that may differ
TIMING = {"img_per_sec", "sec_per_step", "eval_img_per_sec", "elapsed_s"}
SUMMARY_TIMING = {"wall_clock_s", "mean_step_s", "img_per_sec"}  # summary.json's measured cost


def train_subprocess(args, fault=""):
    env = {k: v for k, v in os.environ.items() if k != checkpoint.FAULT_ENV}
    if fault:
        env[checkpoint.FAULT_ENV] = fault
    return subprocess.run([sys.executable, TRAIN, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")


@pytest.mark.slow
def test_kill9_at_any_moment_then_rerun_matches_uninterrupted(fake_cifar, tmp_path):
    args = TINY + ["--data-dir", fake_cifar, "--steps", "30", "--eval-every", "10", "--device", "cpu"]  # bitwise
    ref = str(tmp_path / "ref")
    assert runner.main(args + ["--out", ref]) == 0
    out = str(tmp_path / "run")
    cmd = args + ["--out", out]

    # kill -9 from outside as soon as the first checkpoint exists (the run is mid-step or mid-save)
    proc = subprocess.Popen([sys.executable, TRAIN, *cmd], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    while not os.path.exists(os.path.join(out, "last.pt")) and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err

    # SIGKILL inside a checkpoint write: with the temporary file half written; with the previous checkpoint
    # already rotated to last-1.pt and the new one not yet renamed to last.pt
    for stage in ("write", "rotated"):
        killed = train_subprocess(cmd, fault=f"{stage}:1")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert "resuming" in killed.stderr and "Traceback" not in killed.stderr, killed.stderr

    final = train_subprocess(cmd)
    assert final.returncode == 0 and "Traceback" not in final.stderr, final.stderr
    assert metrics(out) == metrics(ref)
    assert [m["step"] for m in metrics(out)] == [10, 20, 30]
    with open(os.path.join(out, "summary.json")) as f, open(os.path.join(ref, "summary.json")) as g:
        untimed = [{k: v for k, v in json.load(h).items() if k not in SUMMARY_TIMING} for h in (f, g)]
        assert untimed[0] == untimed[1]
    done, want = load_checkpoint(os.path.join(out, "last.pt")), load_checkpoint(os.path.join(ref, "last.pt"))
    for key in ("model", "ema", "optimizer", "samplers", "rng", "step"):
        assert_same_tensors(done[key], want[key], key)
    assert sorted(f for f in os.listdir(out) if ".pt" in f) == ["last-1.pt", "last.pt"]  # disk stays bounded


@pytest.mark.slow
def test_truncated_last_falls_back_to_previous_with_a_warning(fake_cifar, tmp_path):
    out = str(tmp_path / "run")
    args = TINY + ["--data-dir", fake_cifar, "--eval-every", "10", "--out", out]
    assert runner.main(args + ["--steps", "20"]) == 0
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:last.stat().st_size // 2])
    result = train_subprocess(args + ["--steps", "30"])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "warning: skipping unreadable checkpoint" in result.stderr
    assert "from step 10 (last-1.pt)" in result.stderr
    assert [m["step"] for m in metrics(out)] == [10, 20, 30]


def test_loss_guard_names_the_first_non_finite_step_and_terms():
    guard = LossGuard(torch.device("cpu"))
    guard.observe(1, {"x": torch.tensor(2.3), "u": torch.tensor(0.01)})
    guard.observe(2, {"x": torch.tensor(2.1), "u": torch.tensor(0.02)})
    guard.check()
    guard.observe(3, {"x": torch.tensor(1.9), "u": torch.tensor(float("inf"))})
    guard.observe(4, {"x": torch.tensor(float("nan")), "u": torch.tensor(float("nan"))})
    with pytest.raises(NonFiniteLoss, match=r"at step 3: loss_x=1\.89\d*, loss_u=inf"):
        guard.check()
    assert first_non_finite([("a", torch.ones(2)), ("b", torch.tensor([0.0, float("nan")]))]) == "b"
    assert first_non_finite([("a", torch.ones(2)), ("n", torch.tensor([7]))]) == ""


def make_trainer(fake_cifar, *flags):
    cfg = parse_args(TINY + ["--data-dir", fake_cifar, *flags])
    data = prepare_data(cfg.data_dir, cfg.n_labeled, cfg.n_valid, cfg.seed)
    torch.manual_seed(0)
    return Trainer(cfg, make_runtime(cfg), data, create_model(cfg.model, data.num_classes))


def run_loop(trainer, out):
    logger = runner.Logger(out, [], True, 1)
    try:
        runner._loop(trainer.cfg, trainer, logger, out)
    finally:
        logger.close()


@pytest.mark.parametrize("poison_after,message", [
    (15, r"non-finite loss at step 16: loss_x=nan, loss_u=nan"),
    (20, r"non-finite weights in model\.stem\.weight at step 20"),
])
def test_non_finite_stops_before_any_save(fake_cifar, tmp_path, poison_after, message):
    trainer = make_trainer(fake_cifar, "--steps", "30", "--eval-every", "10")

    def poison(t, step):
        if step + 1 == poison_after:
            with torch.no_grad():
                t.model.stem.weight[0, 0, 0, 0] = float("nan")

    trainer.add_hook("after_step", poison)
    with pytest.raises(NonFiniteLoss, match=message):
        run_loop(trainer, str(tmp_path))
    saved = load_checkpoint(str(tmp_path / "last.pt"))
    assert saved["step"] == 10 and not (tmp_path / "last-1.pt").exists()  # the only save: step 10
    assert first_non_finite(saved["model"].items()) == "" and first_non_finite(saved["ema"].items()) == ""


def test_detect_anomaly_reports_the_step_in_one_line(fake_cifar, tmp_path):
    trainer = make_trainer(fake_cifar, "--steps", "5", "--eval-every", "5", "--detect-anomaly")
    with torch.no_grad():
        trainer.model.stem.weight[0, 0, 0, 0] = float("nan")
    with pytest.warns(UserWarning, match="Error detected"), \
            pytest.raises(NonFiniteLoss, match=r"autograd anomaly at step 1: Function '\w+' returned nan"):
        run_loop(trainer, str(tmp_path))
    assert not torch.is_anomaly_enabled()  # switched off again on the way out


def test_huge_lr_stops_with_the_step_and_saves_only_finite_weights(fake_cifar, tmp_path):
    """lr 1e30 (no weight decay): step 1 leaves huge but finite weights, which are saved; step 2's loss is NaN."""
    out = str(tmp_path / "run")
    result = train_subprocess(TINY + ["--data-dir", fake_cifar, "--lr", "1e30", "--wd", "0", "--steps", "20",
                                      "--eval-every", "1", "--out", out])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "train.py: error: non-finite loss at step 2: loss_x=nan, loss_u=nan; stopped before saving it, the "
        "checkpoints in the run folder are finite (try --detect-anomaly, a lower --lr, or --amp none)"]
    assert sorted(f for f in os.listdir(out) if f.endswith(".pt")) == ["last.pt"]
    state = load_checkpoint(os.path.join(out, "last.pt"))
    assert state["step"] == 1
    assert first_non_finite(state["model"].items()) == "" and first_non_finite(state["ema"].items()) == ""


def read_events(folder):
    """Every Event in a folder's TensorBoard files (TFRecord: length, CRC, payload, CRC)."""
    from tensorboardX.proto.event_pb2 import Event
    events = []
    for name in sorted(os.listdir(folder)):
        if name.startswith("events.out.tfevents"):
            data = (folder / name).read_bytes()
            pos = 0
            while pos + 12 <= len(data):
                length = int.from_bytes(data[pos:pos + 8], "little")
                events.append(Event.FromString(data[pos + 12:pos + 12 + length]))
                pos += 12 + length + 4
    return events


def test_tensorboard_events_reach_the_disk_at_every_eval(tmp_path):
    logger = runner.Logger(str(tmp_path), [], True, purge_step=2049)
    try:
        logger.log({"step": 2048, "valid_acc": 12.5, "loss_x": 0.25, "test_acc": float("nan")})
        events = read_events(tmp_path)  # read before close(): log() alone must have put them on disk
    finally:
        logger.close()
    assert events[1].step == 2049 and events[1].session_log.status == events[1].session_log.START
    scalars = {(e.step, v.tag): v.simple_value for e in events for v in e.summary.value}
    assert scalars == {(2048, "valid_acc"): 12.5, (2048, "loss_x"): 0.25}  # a NaN has nothing to plot


def _live_python_objects():
    """(objects the garbage collector tracks, total length of all lists, dicts and sets): what a per-step
    ``append`` would grow. Byte counts would not do: CPython's tuple free lists keep filling for thousands of steps."""
    gc.collect()
    objects = gc.get_objects()
    return len(objects), sum(len(o) for o in objects if type(o) in (list, dict, set))


def test_python_objects_of_the_loop_stay_flat(fake_cifar, tmp_path):
    """Nothing accumulates per step: the live Python objects are the same after 30 and after 70 steps."""
    trainer = make_trainer(fake_cifar, "--steps", "70", "--eval-every", "1000", "--batch-size", "2")
    counts = {}

    def count(t, step):
        if step + 1 in (30, 70):
            counts[step + 1] = _live_python_objects()

    trainer.add_hook("after_step", count)
    run_loop(trainer, str(tmp_path))
    (objects_30, items_30), (objects_70, items_70) = counts[30], counts[70]
    assert objects_70 - objects_30 < 20 and items_70 - items_30 < 20, (counts, "one more per step would be +40")
