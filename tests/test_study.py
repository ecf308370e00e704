"""``python -m semisup.compress study``: every method × ratio × fine-tuning as resumable train.py runs, rendered."""
import json
import os

import pytest

from semisup.commands.compress import main as compress
from semisup.config import Config, validate
from semisup.experiments.study import mixmatch_weight, plan

from conftest import train_tiny

STUDY = ["--methods", "magnitude", "slim", "--ratios", "0.5", "--steps", "2", "--eval-every", "2"]
FLAGS = ["--", "--batch-size", "8", "--eval-batch-size", "64", "--threads", "1", "--no-progress", "--amp", "none"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, fake_cifar):
    return train_tiny(tmp_path_factory, fake_cifar, "mixmatch", 2, "--seed", "3")


def test_plan_fine_tunes_each_pruned_network_twice_on_the_checkpoints_split(checkpoint):
    runs = plan([checkpoint], "S", ["magnitude", "l1-filter"], [0.3, 0.7], ["mixmatch", "supervised"], 100, 25)
    assert [r.row for r in runs[:2]] == ["dense-mixmatch", "dense-supervised"] and len(runs) == 2 + 2 * 2 * 2
    for run in runs:
        argv = list(run.argv)
        assert argv[argv.index("--init") + 1] == checkpoint and run.seed == 3 and run.labels == 40
        assert argv[argv.index("--seed") + 1] == "3" and argv[argv.index("--n-valid") + 1] == "100"
        assert argv[argv.index("--model") + 1] == "wrn-10-tiny" and argv[argv.index("--steps") + 1] == "100"
        assert run.out == os.path.join("S", "study", f"{run.row}@40", "seed3")
    l1 = next(r for r in runs if r.row == "l1-filter-70-mixmatch").argv
    assert l1[l1.index("--init-prune") + 1] == "l1-filter" and float(l1[l1.index("--init-ratio") + 1]) == 0.7
    assert l1[l1.index("--algorithm") + 1] == "mixmatch" and l1[l1.index("--rampup-kimg") + 1] == "0"
    # the tiny run's 2 steps of 8 labeled images into the official 1,024-kimg ramp: 75 · 16 / 1,048,576
    assert float(l1[l1.index("--lambda-u") + 1]) == pytest.approx(75 * 16 / 1048576, rel=1e-12)
    sup = next(r for r in runs if r.row == "l1-filter-70-supervised").argv
    assert "--lambda-u" not in sup and "--rampup-kimg" not in sup


@pytest.mark.parametrize("overrides, step, flags", [
    ({"rampup_steps": 2400}, 600, ["--lambda-u", "18.75", "--rampup-kimg", "0"]),  # 75 · 600 / 2400, mid-ramp
    ({}, 16384, ["--lambda-u", "75.0", "--rampup-kimg", "0"]),  # 16,384 · 64 = 1,024 kimg: the ramp's end
    ({}, 1 << 20, ["--lambda-u", "75.0", "--rampup-kimg", "0"]),  # past it: the paper's run
    ({"lambda_u": 100.0, "rampup_kimg": 64}, 512, ["--lambda-u", "50.0", "--rampup-kimg", "0"]),  # 32 of 64 kimg
    ({"algorithm": "supervised"}, 600, ["--rampup-kimg", "0"]),  # no λu to go on with: MixMatch's own, at once
])
def test_mixmatch_fine_tuning_goes_on_at_the_weight_its_checkpoint_ended_with(overrides, step, flags):
    assert mixmatch_weight(validate(Config(**overrides)), step) == flags


def test_a_tiny_study_runs_resumes_and_draws_three_pictures(checkpoint, fake_cifar, tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "--checkpoint", checkpoint, "--out", str(out), "--data-dir", fake_cifar, *STUDY, *FLAGS]
    assert compress(argv) == 0
    root = out / "study"
    for name in ("study.md", "study_macs.png", "study_params.png", "study_latency.png"):
        assert (root / name).stat().st_size > 0, name
    table = (root / "study.md").read_text()
    slim = next(line for line in table.splitlines() if line.startswith("| slim | 50 %"))
    with open(root / "slim-50-mixmatch@40" / "seed3" / "init_prune.json") as f:
        record = json.load(f)
    assert f"{record['macs']['after']:,}" in slim and f"{record['params']['after']:,}" in slim
    assert "(1 seeds)" in slim and table.startswith("# Compression study")
    assert f"| dense | 0 % | {record['macs']['before']:,} |" in table
    magnitude = next(line for line in table.splitlines() if line.startswith("| magnitude | 50 %"))
    with open(root / "magnitude-50-mixmatch@40" / "seed3" / "init_prune.json") as f:
        masked = json.load(f)  # dense kernels with half their weights zero: same params, half of them nonzero
    assert masked["params"]["after"] == record["params"]["before"] > masked["nonzero_params"]["after"]
    assert f"{masked['params']['after']:,} ({masked['nonzero_params']['after']:,})" in magnitude
    capsys.readouterr()
    assert compress(argv) == 0  # resumed: every run finished, nothing redone
    said = capsys.readouterr().out
    assert said.count("finished at step 2, skipped") == 6 and "started" not in said


@pytest.mark.parametrize("flags, message", [
    (["--ratios", "1.0"], "--ratios must be in (0, 1)"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--data-dir", "EMPTY"], "CIFAR-10"),
])
def test_bad_input_is_one_line_and_writes_nothing(checkpoint, fake_cifar, tmp_path, capsys, flags, message):
    flags = [str(tmp_path) if f == "EMPTY" else f for f in flags]
    out = tmp_path / "never"
    argv = ["study", "--checkpoint", checkpoint, "--out", str(out), "--steps", "2", "--data-dir", fake_cifar, *flags]
    assert compress(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert compress(["study", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"),
                     "--steps", "2"]) == 2
    assert "--checkpoint" in capsys.readouterr().err and not (tmp_path / "o").exists()
