"""sweep.py --launcher slurm against a real slurmctld/slurmd (scripts/slurm-single-node.sh start; .ci/run does it).

A tiny sweep goes out as one job array and is rendered by tables.py; resubmitting skips finished and queued runs;
a run sent the scheduler's preemption signal is checkpointed, requeued and ends with the metrics of an
uninterrupted run; a failing job is reported by ``status`` with its log line. Without a running SLURM these tests
skip, unless CI=true or SEMISUP_REQUIRE_SLURM=1, where they fail.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT
from test_sweep import TINY_RUN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
SWEEP = os.path.join(ROOT, "scripts", "sweep.py")
TRAIN = os.path.join(ROOT, "train.py")
TABLES = os.path.join(ROOT, "scripts", "tables.py")
DEFAULT_CONF = os.path.join(os.environ.get("SEMISUP_SLURM_DIR", os.path.join(tempfile.gettempdir(), "semisup-slurm")),
                            "slurm.conf")
TIMING = ("img_per_sec", "sec_per_step", "eval_img_per_sec", "elapsed_s")


def _required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("SEMISUP_REQUIRE_SLURM") == "1"


@pytest.fixture(scope="module")
def cluster():
    """The environment that reaches the test cluster (SLURM_CONF), or skip/fail when none is running."""
    env = dict(os.environ)
    if "SLURM_CONF" not in env and os.path.exists(DEFAULT_CONF):
        env["SLURM_CONF"] = DEFAULT_CONF
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30, env=env)
        up = proc.returncode == 0 and proc.stdout.split() and all(s in ("idle", "mix", "alloc") for s in
                                                                  proc.stdout.split())
    except (OSError, subprocess.TimeoutExpired):
        up = False
    if not up:
        message = "no SLURM running (start one with scripts/slurm-single-node.sh start)"
        if _required():
            pytest.fail(message)
        pytest.skip(message)
    return env


def sweep(env, *args, timeout=120):
    return subprocess.run([sys.executable, SWEEP, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def slurm_args(out, seeds, steps, eval_every, data, folder, *more):
    return ["labels", "--out", out, "--labels", "40", "--seeds", *map(str, seeds), "--steps", str(steps),
            "--eval-every", str(eval_every), "--data-dir", data, *TINY_RUN, "--launcher", "slurm",
            "--slurm-gpus-per-run", "0", "--slurm-cpus-per-run", "1", "--slurm-time", "10", "--slurm-folder", folder,
            *more]


def run_dir(out, seed):
    return os.path.join(out, "labels", "mixmatch@40", f"seed{seed}")


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def finished(folder, steps):
    try:
        with open(os.path.join(folder, "summary.json")) as f:
            return json.load(f)["step"] >= steps
    except (OSError, ValueError):
        return False


def job_id(folder):
    with open(os.path.join(folder, "slurm.json")) as f:
        return json.load(f)["job_id"]


def metrics(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def test_array_resubmission_and_tables(cluster, fake_cifar, tmp_path):
    out, folder = str(tmp_path / "sweep"), str(tmp_path / "submitit")
    first = sweep(cluster, *slurm_args(out, (1, 2), 20, 10, fake_cifar, folder))
    assert first.returncode == 0, first.stderr
    ids = [job_id(run_dir(out, s)) for s in (1, 2)]
    assert ids[0].split("_")[0] == ids[1].split("_")[0] and ids[0] != ids[1]  # one array, two tasks
    assert len(re.findall(r"submitted as job", first.stdout)) == 2
    again = sweep(cluster, *slurm_args(out, (1, 2), 20, 10, fake_cifar, folder))
    assert again.returncode == 0 and "nothing to submit" in again.stdout, again.stdout + again.stderr
    assert all(f"as job {i}, skipped" in again.stdout for i in ids)
    for seed in (1, 2):
        wait_for(lambda s=seed: finished(run_dir(out, s), 20), 240, f"seed {seed} to finish")
    third = sweep(cluster, *slurm_args(out, (1, 2, 3), 20, 10, fake_cifar, folder))
    try:
        assert third.returncode == 0, third.stderr
        assert third.stdout.count("finished at step 20, skipped") == 2
        assert len(re.findall(r"submitted as job", third.stdout)) == 1 and "seed3: submitted" in third.stdout
        table = subprocess.run([sys.executable, TABLES, out], capture_output=True, text=True, timeout=120)
        assert table.returncode == 0, table.stderr
        row = [line for line in table.stdout.splitlines() if line.startswith("| mixmatch | 40 |")]
        assert len(row) == 1 and "| 2 | 20 (" in row[0]  # the two finished seeds, 20 steps each
    finally:
        subprocess.run(["scancel", job_id(run_dir(out, 3))], env=cluster, timeout=30)


def test_preempted_run_is_requeued_and_ends_as_an_uninterrupted_one(cluster, fake_cifar, tmp_path):
    out, folder = str(tmp_path / "sweep"), str(tmp_path / "submitit")
    run = run_dir(out, 1)
    submitted = sweep(cluster, *slurm_args(out, (1,), 80, 20, fake_cifar, folder))
    assert submitted.returncode == 0, submitted.stderr
    job = job_id(run)
    wait_for(lambda: os.path.exists(os.path.join(run, "metrics.jsonl")) and metrics(run), 240,
             "the first evaluation")
    subprocess.run(["scancel", "--signal=USR2", job], env=cluster, check=True, timeout=30)
    reference = str(tmp_path / "reference")  # trained while the job is requeued
    ref = subprocess.run([sys.executable, TRAIN, *TINY_RUN, "--n-labeled", "40", "--seed", "1", "--steps", "80",
                          "--eval-every", "20", "--data-dir", fake_cifar, "--out", reference],
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    wait_for(lambda: finished(run, 80), 240, "the requeued run to finish")
    with open(os.path.join(run, "train.log")) as f:
        log = f.read()
    stopped = re.search(r"stopped at step (\d+) for requeue; rerun resumes", log)
    assert stopped, log
    step = int(stopped.group(1))
    assert 20 <= step < 80 and f"from step {step} (last.pt)" in log
    with open(os.path.join(folder, f"{job}_0_log.out")) as f:
        assert "Requeued job" in f.read()
    assert metrics(run) == metrics(reference)
    status = sweep(cluster, "status", out)
    assert status.stdout.strip().splitlines()[-1] == "1 finished", status.stdout


def test_failed_job_is_reported_with_its_log_line(cluster, tmp_path):
    out, folder = str(tmp_path / "sweep"), str(tmp_path / "submitit")
    missing = str(tmp_path / "no-data")
    submitted = sweep(cluster, *slurm_args(out, (1,), 5, 5, missing, folder))
    assert submitted.returncode == 0, submitted.stderr

    def failed():
        lines = sweep(cluster, "status", out).stdout.strip().splitlines()
        return lines[-1] == "1 failed" and lines

    wait_for(failed, 240, "the job to fail")
    line = failed()[0]
    assert line.split()[1] == "failed" and job_id(run_dir(out, 1)) in line
    assert "train.py: error: CIFAR-10 not found in" in line


def test_unknown_partition_and_bad_time_submit_nothing(cluster, tmp_path):
    out, folder = str(tmp_path / "sweep"), str(tmp_path / "submitit")
    for more, fragment in ((["--slurm-partition", "nowhere"], "unknown SLURM partition 'nowhere' (this cluster "
                                                              "has: debug)"),
                           (["--slurm-time", "36h"], "--slurm-time '36h' is not a SLURM time")):
        args = slurm_args(out, (1,), 5, 5, "data", folder)
        proc = sweep(cluster, *args[:args.index("--slurm-time")], *more)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0], proc.stderr
        assert not os.path.exists(out) and not os.path.exists(folder)
