"""sweep.py's launchers without a scheduler: --parallel on this machine, the status of local runs, the step read
from a checkpoint without torch, SLURM time formats, and the launcher's bad input (one line, exit 2, nothing
written)."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from semisup.checkpoint import save_checkpoint
from semisup.config import ConfigError
from semisup.experiments.slurm import parse_time
from semisup.experiments.status import checkpoint_step

from conftest import ROOT
from test_bad_input import readme_messages
from test_sweep import TINY_RUN

SWEEP = os.path.join(ROOT, "scripts", "sweep.py")


def sweep(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, SWEEP, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


@pytest.mark.parametrize("text, minutes", [("30", 30), ("5:30", 6), ("36:00:00", 2160), ("1-12", 2160),
                                           ("2-00:30", 2910), ("1-00:00:30", 1441)])
def test_slurm_time_formats(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["1h", "1:2:3:4", "", "1-25", "10:99", "0:30"])
def test_slurm_time_refused(text):
    with pytest.raises(ConfigError, match="--slurm-time"):
        parse_time(text)


def test_checkpoint_step_is_read_without_running_its_code(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(3)}, "model_name": "m", "arch": {}, "step": 37,
                     "window": [{"sums": torch.zeros(2), "steps": 7, "time": 0.5}]}, str(tmp_path))
    assert checkpoint_step(str(tmp_path / "last.pt")) == 37
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    assert checkpoint_step(str(tmp_path / "junk.pt")) is None


def _folder(root, seed, config=None, summary=None, local=None):
    folder = os.path.join(root, "labels", "mixmatch@40", f"seed{seed}")
    os.makedirs(folder)
    for name, content in (("config.json", config), ("summary.json", summary), ("local.json", local)):
        if content is not None:
            with open(os.path.join(folder, name), "w") as f:
                json.dump(content, f)
    return folder


def test_status_of_local_runs(tmp_path):
    root = str(tmp_path)
    host = socket.gethostname()
    _folder(root, 1, {"steps": 20}, {"step": 20}, {"pid": 1, "host": host, "started": "x", "returncode": 0})
    failed = _folder(root, 2, {"steps": 20}, None, {"pid": 2 ** 22 + 1, "host": host, "started": "x",
                                                    "returncode": 2})
    with open(os.path.join(failed, "train.log"), "w") as f:
        f.write("resuming\ntrain.py: error: something precise\n")
    _folder(root, 3, {"steps": 20}, None, {"pid": 2 ** 22 + 2, "host": host, "started": "x", "returncode": None})
    with open(os.path.join(root, "sweep-runs.json"), "w") as f:
        json.dump({"runs": [os.path.join("labels", "mixmatch@40", f"seed{s}") for s in (1, 2, 3, 4)]}, f)
    proc = sweep("status", root, env={"PATH": os.path.dirname(sys.executable)})  # no squeue on this PATH
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("no scheduler reachable (squeue: squeue is not on the PATH)")
    states = {line.split()[0].split("/")[-1]: line for line in lines[1:-1]}
    assert states["seed1"].split()[1] == "finished" and "step 20/20" in states["seed1"]
    assert states["seed2"].split()[1] == "failed" and states["seed2"].endswith("train.py: error: something precise")
    assert states["seed3"].split()[1] == "stopped"
    assert states["seed4"].split()[1] == "not" and "not started" in states["seed4"]
    assert lines[-1] == "1 finished, 1 failed, 1 stopped, 1 not started"


def _refused(proc, fragment, out):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("sweep.py: error: ") and fragment in lines[0]
    assert not os.path.exists(out)  # nothing written, nothing submitted
    message = lines[0].removeprefix("sweep.py: error: ")
    assert any(p.fullmatch(message) for p in readme_messages()), f"not in docs/troubleshooting.md: {message}"


def test_launcher_bad_input(tmp_path):
    out = str(tmp_path / "never")
    base = ["labels", "--out", out, "--labels", "40", "--seeds", "1", "--steps", "2"]
    _refused(sweep(*base, "--launcher", "slurm", env={"PATH": os.path.dirname(sys.executable)}),
             "--launcher slurm needs SLURM's sbatch on the PATH", out)
    if not torch.cuda.is_available():
        _refused(sweep(*base, "--parallel", str(len(os.sched_getaffinity(0)) + 1)), "CPU core(s)", out)


@pytest.mark.slow
def test_parallel_runs_on_their_own_cores_and_a_failure_does_not_stop_the_others(fake_cifar, tmp_path):
    out = str(tmp_path / "sweep")
    flags = [t for i, t in enumerate(TINY_RUN) if "--threads" not in TINY_RUN[max(i - 1, 0):i + 1]]
    args = ["labels", "--out", out, "--labels", "40", "--seeds", "1", "2", "3", "--steps", "10", "--eval-every",
            "5", "--data-dir", fake_cifar, "--parallel", "2", *flags]
    bad = os.path.join(out, "labels", "mixmatch@40", "seed2")
    os.makedirs(bad)
    with open(os.path.join(bad, "config.json"), "w") as f:
        json.dump({"lr": 0.5}, f)  # another experiment: train.py refuses this folder
    proc = sweep(*args)
    assert proc.returncode == 1, proc.stderr
    log = os.path.join(bad, "train.log")
    assert proc.stderr.strip().splitlines()[-1].endswith(f"(log {log})")
    assert "holds a run with another configuration" in open(log).read()
    share = len(os.sched_getaffinity(0)) // 2
    for seed in (1, 3):
        folder = os.path.join(out, "labels", "mixmatch@40", f"seed{seed}")
        with open(os.path.join(folder, "summary.json")) as f:
            assert json.load(f)["step"] == 10
        with open(os.path.join(folder, "config.json")) as f:
            assert json.load(f)["threads"] == share
        assert os.path.getsize(os.path.join(folder, "train.log")) > 0
    assert "2 of 3 runs finished" in proc.stdout
    status = sweep("status", out, env={"PATH": os.path.dirname(sys.executable)})
    assert status.stdout.strip().splitlines()[-1] == "2 finished, 1 failed"
