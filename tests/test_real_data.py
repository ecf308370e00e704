"""The resume guarantee on the real CIFAR-10 (JPEG copy), through train.py as a user runs it.

The model and batch are small so that the check takes about a minute on two CPU cores; the full-size command
(WRN-28-2, batch 64) exercises the same code path.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

SMALL = ["--model", "wrn-10-tiny", "--batch-size", "16", "--n-valid", "500", "--threads", "2", "--no-progress",
         "--amp", "none"]
DETERMINISTIC = ("step", "loss_x", "loss_u", "lambda_u", "valid_acc", "valid_acc_ema", "test_acc", "test_acc_ema")


def _train(data, out, steps):
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--data-dir", data, "--n-labeled", "250",
           "--steps", str(steps), "--eval-every", "20", "--out", str(out), *SMALL]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def _lines(out):
    with open(out / "metrics.jsonl") as f:
        return [{k: v for k, v in json.loads(line).items() if k in DETERMINISTIC} for line in f]


@pytest.mark.timeout(900)
def test_real_data_resume_at_40_equals_uninterrupted_60(real_cifar, tmp_path):
    run = tmp_path / "R"
    _train(real_cifar, run, 40)
    assert (run / "config.json").is_file() and (run / "last.pt").is_file()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run))
    assert [r["step"] for r in _lines(run)] == [20, 40]
    resumed = _train(real_cifar, run, 60)
    assert "from step 40" in resumed.stderr
    _train(real_cifar, tmp_path / "U", 60)
    assert _lines(run) == _lines(tmp_path / "U")
    assert len(_lines(run)) == 3
