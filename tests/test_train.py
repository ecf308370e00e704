"""The training loop end to end on generated data: run folder, exact resumption, determinism, the baseline."""
import json
import os
import statistics
import struct

import pytest
import torch

from semisup import engine
from semisup.config import parse_args
from semisup.losses import lambda_u_at
from semisup.models import create_model
from semisup.runner import main

from conftest import ROOT, TINY

REQUIRED = ("step", "loss_x", "loss_u", "lambda_u", "valid_acc", "valid_acc_ema", "test_acc", "test_acc_ema",
            "img_per_sec")
DETERMINISTIC = ("step", "loss_x", "loss_u", "lambda_u", "valid_acc", "valid_acc_ema", "test_acc", "test_acc_ema")


def train(data_dir, out, *extra):
    argv = [*TINY, "--data-dir", data_dir, "--out", str(out), "--eval-every", "20", *extra]
    assert main(argv) == 0
    return argv


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def deterministic(record):
    return {k: record[k] for k in DETERMINISTIC}


def tensorboard_scalars(out):
    """(tag, step) -> value from the event files, read as the TFRecord stream they are."""
    from tensorboardX.proto.event_pb2 import Event
    scalars = {}
    for name in os.listdir(out):
        if not name.startswith("events.out.tfevents"):
            continue
        with open(os.path.join(out, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars[(value.tag, event.step)] = value.simple_value
    return scalars


@pytest.fixture(scope="module")
def run60(fake_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("run60") / "run"
    argv = train(fake_cifar, out, "--steps", "60")
    return out, argv


def test_run_folder_contents(run60):
    out, argv = run60
    with open(out / "config.json") as f:
        saved = json.load(f)
    provenance = saved.pop("provenance")
    assert saved == parse_args(argv).to_dict()  # every setting, the algorithm's options resolved
    assert provenance["torch"] == torch.__version__ and set(provenance) == {"torch", "git_commit", "git_dirty"}
    with open(out / "summary.json") as f:
        assert json.load(f)["provenance"] == provenance
    lines = metrics(out)
    assert [r["step"] for r in lines] == [20, 40, 60]
    for r in lines:
        assert set(REQUIRED) <= set(r)
        assert all(0 <= r[k] <= 100 for k in ("valid_acc", "valid_acc_ema", "test_acc", "test_acc_ema"))
        assert r["loss_x"] > 0 and r["loss_u"] > 0 and r["img_per_sec"] > 0
        assert r["lambda_u"] == pytest.approx(lambda_u_at((r["step"] - 1) * 8, 75.0, 1024 * 1024))  # the step just
        # taken, at --batch-size 8: the ramp counts 1,048,576 labeled images
    assert (out / "last.pt").is_file() and (out / "last-1.pt").is_file()
    with open(out / "summary.json") as f:
        summary = json.load(f)
    median = statistics.median(r["test_acc_ema"] for r in lines)
    paper = {k: summary[k] for k in ("median_test_acc_ema_last", "error", "n_evals_used", "step")}
    assert paper == {"median_test_acc_ema_last": median, "error": 100.0 - median, "n_evals_used": 3, "step": 60}
    best_valid = max(lines, key=lambda r: r["valid_acc_ema"])  # the honest selection: on the validation set
    assert summary["test_acc_ema_at_best_valid"] == best_valid["test_acc_ema"]
    assert summary["best_valid_step"] == best_valid["step"]
    assert summary["test_acc_ema_final"] == lines[-1]["test_acc_ema"]
    assert summary["test_acc_ema_best_optimistic"] == max(r["test_acc_ema"] for r in lines)
    assert summary["precision"] == "fp32" and summary["device"].startswith("cpu")
    assert summary["wall_clock_s"] == lines[-1]["elapsed_s"] > 0
    assert [r["elapsed_s"] for r in lines] == sorted(r["elapsed_s"] for r in lines)  # cumulative
    steps = [20, 20, 20]
    assert summary["mean_step_s"] == pytest.approx(sum(n * r["sec_per_step"] for n, r in zip(steps, lines)) / 60)


def test_summary_without_a_validation_set(fake_cifar, tmp_path):
    """--n-valid 0 (the paper's protocol): no selection on validation data, the rest as with it."""
    out = tmp_path / "novalid"
    train(fake_cifar, out, "--steps", "20", "--eval-every", "10", "--n-valid", "0")
    lines = metrics(out)
    assert all(r["valid_acc"] is None and r["valid_acc_ema"] is None for r in lines)  # NaN is written as null
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert summary["test_acc_ema_at_best_valid"] is None and summary["best_valid_step"] is None
    assert summary["test_acc_ema_final"] == lines[-1]["test_acc_ema"]
    assert summary["median_test_acc_ema_last"] == statistics.median(r["test_acc_ema"] for r in lines)


def test_tensorboard_holds_the_same_numbers(run60):
    out, _ = run60
    scalars = tensorboard_scalars(out)
    for r in metrics(out):
        for key in ("loss_x", "loss_u", "lambda_u", "test_acc_ema", "valid_acc", "img_per_sec"):
            assert scalars[(key, r["step"])] == pytest.approx(r[key], rel=1e-6)


def test_checkpoint_loads_with_weights_only(run60):
    out, _ = run60
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 60 and state["model_name"] == "wrn-10-tiny"
    assert set(state["samplers"]) == {"labeled", "unlabeled"}
    # 60 steps x 8 rows: the 40 labeled images 12 times over, 480 of the 460 unlabeled ones (one epoch and 20).
    assert state["samplers"]["labeled"] == {"epoch": 11, "cursor": 40}
    assert state["samplers"]["unlabeled"] == {"epoch": 1, "cursor": 20}
    assert len(state["rng"]) == 1 and "torch" in state["rng"][0] and len(state["history"]) == 3
    assert state["config"]["steps"] == 60 and state["optimizer"]["state"]
    model = create_model("wrn-10-tiny")
    model.load_state_dict(state["model"])
    model.load_state_dict(state["ema"])
    assert torch.load(out / "last-1.pt", weights_only=True)["step"] == 40


def test_stopped_at_40_and_resumed_to_60_equals_uninterrupted(run60, fake_cifar, tmp_path, capsys):
    out = tmp_path / "resumed"
    train(fake_cifar, out, "--steps", "40")
    assert [r["step"] for r in metrics(out)] == [20, 40]
    train(fake_cifar, out, "--steps", "60")
    assert "resuming" in capsys.readouterr().err
    resumed, uninterrupted = metrics(out), metrics(run60[0])
    assert [r["step"] for r in resumed] == [20, 40, 60]
    assert [deterministic(r) for r in resumed] == [deterministic(r) for r in uninterrupted]
    a, b = torch.load(out / "last.pt", weights_only=True), torch.load(run60[0] / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_same_command_twice_gives_identical_metrics(fake_cifar, tmp_path):
    train(fake_cifar, tmp_path / "a", "--steps", "20", "--eval-every", "10")
    train(fake_cifar, tmp_path / "b", "--steps", "20", "--eval-every", "10")
    first, second = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    assert len(first) == 2 and [deterministic(r) for r in first] == [deterministic(r) for r in second]


def test_other_configuration_in_the_run_folder_is_refused(run60, fake_cifar, capsys):
    out, _ = run60
    before = metrics(out)
    argv = [*TINY, "--data-dir", fake_cifar, "--out", str(out), "--eval-every", "20", "--steps", "60"]
    assert main([*argv, "--lr", "0.001"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a run with another configuration (lr: 0.002 -> 0.001)" in err
    assert metrics(out) == before


def test_supervised_baseline_never_draws_unlabeled_images(fake_cifar, tmp_path, monkeypatch):
    drawn = []
    views = engine.Trainer._views

    def recording(self, name, count):
        drawn.append((name, count))
        return views(self, name, count)

    monkeypatch.setattr(engine.Trainer, "_views", recording)
    out = tmp_path / "supervised"
    train(fake_cifar, out, "--steps", "20", "--eval-every", "10", "--algorithm", "supervised")
    assert drawn == [("labeled", 1)] * 20
    lines = metrics(out)
    assert [r["step"] for r in lines] == [10, 20]
    assert all("loss_u" not in r and "lambda_u" not in r and r["loss_x"] > 0 for r in lines)
    state = torch.load(out / "last.pt", weights_only=True)
    assert set(state["samplers"]) == {"labeled"}
    assert state["config"]["algorithm"] == "supervised"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda(fake_cifar, tmp_path):
    """The checkpoint is mapped to the GPU on resume; its RNG states must still be restored (CPU tensors)."""
    out = tmp_path / "cuda"
    train(fake_cifar, out, "--steps", "20", "--device", "cuda")
    train(fake_cifar, out, "--steps", "40", "--device", "cuda")
    assert [r["step"] for r in metrics(out)] == [20, 40]


def test_stop_signal_checkpoints_at_the_step_and_the_rerun_ends_as_uninterrupted(fake_cifar, tmp_path):
    """SIGUSR1 between two evaluations: train.py finishes the step, checkpoints there (the loss window included),
    exits 75; the same command resumes and logs what an uninterrupted run logs (timing fields aside)."""
    import signal
    import subprocess
    import sys
    import time

    from semisup.checkpoint import load_checkpoint
    out = tmp_path / "stopped"
    argv = [sys.executable, os.path.join(ROOT, "train.py"), *TINY, "--data-dir", fake_cifar, "--out", str(out),
            "--steps", "100", "--eval-every", "20"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "metrics.jsonl").exists() or not metrics(out):  # the first evaluation, at step 20
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 75, err
    step = load_checkpoint(str(out / "last.pt"))["step"]
    assert f"stopped at step {step} for requeue" in err and 20 <= step < 100
    assert subprocess.run(argv, capture_output=True, text=True, timeout=300).returncode == 0
    train(fake_cifar, tmp_path / "straight", "--steps", "100")
    timing = ("img_per_sec", "sec_per_step", "eval_img_per_sec", "elapsed_s")
    strip = [{k: v for k, v in r.items() if k not in timing} for r in metrics(out)]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in metrics(tmp_path / "straight")]
