"""The adaptive thresholds through train.py: a run killed mid-curriculum resumes bit-identical (the official
one-micro-batch path), the pass rate and thresholds reach metrics.jsonl and TensorBoard, and FixMatch logs its own."""
import json
import os
import shutil

import pytest
import torch
from test_reliability import read_events

from semisup.checkpoint import load_checkpoint
from semisup.runner import main as train

from conftest import TINY

FLEX = ["--algorithm", "flexmatch", "--uratio", "2", "--confidence", "0.15"]  # a tiny network marks images at 0.15


def _records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("flags", [FLEX, ["--algorithm", "freematch", "--uratio", "2", "--ema-p", "0.9"],
                                   ["--algorithm", "dash", "--uratio", "2", "--dash-warmup", "1",
                                    "--dash-every", "1"]])
def test_a_run_stopped_mid_curriculum_resumes_bit_identical(fake_cifar, tmp_path, flags):
    base = TINY + ["--data-dir", fake_cifar, "--eval-every", "2", "--steps", "4", "--keep-checkpoints", "2", *flags]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert train(base + ["--out", straight]) == 0
    os.makedirs(resumed)  # the run as it stood when killed after step 2's checkpoint
    shutil.copy(os.path.join(straight, "config.json"), resumed)
    shutil.copy(os.path.join(straight, "last-1.pt"), os.path.join(resumed, "last.pt"))
    assert load_checkpoint(os.path.join(resumed, "last.pt"))["step"] == 2
    assert train(base + ["--out", resumed]) == 0
    a, b = load_checkpoint(os.path.join(straight, "last.pt")), load_checkpoint(os.path.join(resumed, "last.pt"))
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    state = {k: v for k, v in a["algorithm"].items() if k != "calls"}
    assert state
    for key, value in state.items():
        assert (torch.equal(value, b["algorithm"][key]) if torch.is_tensor(value) else value == b["algorithm"][key])
    if flags is FLEX:
        assert (a["algorithm"]["marks"] >= 0).any() and a["algorithm"]["beta"].max() > 0
    timing = ("img_per_sec", "sec_per_step", "eval_img_per_sec", "elapsed_s")
    assert ([{k: v for k, v in r.items() if k not in timing} for r in _records(straight)]
            == [{k: v for k, v in r.items() if k not in timing} for r in _records(resumed)])


def test_pass_rate_and_thresholds_reach_metrics_and_tensorboard(fake_cifar, tmp_path):
    out = str(tmp_path / "run")
    assert train(TINY + ["--data-dir", fake_cifar, "--steps", "2", "--eval-every", "1", "--out", out, *FLEX]) == 0
    first, second = _records(out)
    assert first["class_threshold"] == [0.0] * 10 and first["pass_rate"] == 1.0  # FlexMatch starts open
    assert 0 <= second["pass_rate"] <= 1 and len(second["class_threshold"]) == 10
    assert 0 < first["unused_share"] <= 1
    tags = {v.tag for e in read_events(tmp_path / "run") for v in e.summary.value}
    assert {"pass_rate", "unused_share", "class_threshold/0", "class_threshold/9"} <= tags


def test_fixmatch_logs_the_share_that_reaches_tau(fake_cifar, tmp_path):
    out = str(tmp_path / "fm")
    flags = ["--algorithm", "fixmatch", "--uratio", "2", "--confidence", "0.12"]
    assert train(TINY + ["--data-dir", fake_cifar, "--steps", "1", "--eval-every", "1", "--out", out, *flags]) == 0
    record, = _records(out)
    assert record["threshold"] == pytest.approx(0.12) and 0 < record["pass_rate"] <= 1
    shutil.rmtree(out)


def test_fine_tuning_a_pruned_checkpoint_with_an_adaptive_threshold(fake_cifar, tmp_path):
    """--init with --init-prune, then FreeMatch (the compression study's fine-tuning with another algorithm)."""
    from semisup.checkpoint import model_from_checkpoint
    from semisup.masks import sparsity

    source = str(tmp_path / "source")
    assert train(TINY + ["--data-dir", fake_cifar, "--steps", "1", "--eval-every", "1", "--out", source]) == 0
    out = str(tmp_path / "tuned")
    assert train(TINY + ["--data-dir", fake_cifar, "--steps", "2", "--eval-every", "2", "--out", out,
                         "--init", os.path.join(source, "last.pt"), "--init-prune", "magnitude",
                         "--init-ratio", "0.5", "--algorithm", "freematch", "--uratio", "2"]) == 0
    state = load_checkpoint(os.path.join(out, "last.pt"))
    assert state["algorithm"]["tau"].item() != pytest.approx(0.1)  # the curriculum moved from 1/C
    assert sparsity(model_from_checkpoint(state, "raw", "tuned")) == pytest.approx(0.5, abs=0.01)
