"""scripts/sweep.py: the runs it plans, the commands it prints, its cost estimate, and an end-to-end sweep on
generated data that is killed in the middle of a run and resumed, then rendered beside the paper's numbers."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from semisup.commands.sweep import main
from semisup.config import Config, parse_args
from semisup.experiments import numbers as paper
from semisup.experiments.sweep import TABLES, estimate_hours, finished_step, plan, relative_step_cost

from conftest import ROOT, TINY

SWEEP = os.path.join(ROOT, "scripts", "sweep.py")
TINY_RUN = [t for i, t in enumerate(TINY) if "--n-labeled" not in TINY[max(i - 1, 0):i + 1]]  # the sweep sets it
TABLES_PY = os.path.join(ROOT, "scripts", "tables.py")


def printed_commands(capsys, argv):
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert all(line.startswith("python train.py ") for line in lines)
    return [parse_args(shlex.split(line)[2:]) for line in lines]


def test_print_commands_table4_every_row_label_and_seed(capsys, tmp_path):
    out = str(tmp_path / "sweep")
    cfgs = printed_commands(capsys, ["table4", "--out", out, "--seeds", "1", "2", "--print-commands"])
    assert len(cfgs) == 11 * 2 * 2
    assert {(c.out.split(os.sep)[-2], c.seed) for c in cfgs} == {
        (f"{row}@{n}", s) for row in paper.TABLE4 for n in (250, 4000) for s in (1, 2)}
    for c in cfgs:
        assert c.out == os.path.join(out, "table4", c.out.split(os.sep)[-2], f"seed{c.seed}")
        assert str(c.n_labeled) == c.out.split(os.sep)[-2].split("@")[1]
        if c.algorithm == "ict":  # the official ict.py of runs/table4.sh: weight 1000, beta 0.75, its own ramp
            assert (c.lambda_u, c.alpha, c.rampup_kimg, c.rampup_share, c.wd) == (1000.0, 0.75, 0, 0.4, 0.02)
            assert c.rampup_images == 0.4 * c.steps * c.batch_size
            continue
        assert (c.lambda_u, c.rampup_kimg, c.rampup_steps, c.steps) == (100.0, 128, 0, 1 << 20)  # the ablation's λu


def test_print_commands_rows_are_their_switches(capsys, tmp_path):
    cfgs = printed_commands(capsys, ["table4", "--out", str(tmp_path), "--labels", "250", "--print-commands"])
    by_row = {c.out.split(os.sep)[-2].split("@")[0]: c for c in cfgs}
    default = Config()
    assert by_row.pop("ict").algorithm == "ict"
    switches = {row: (c.K, c.temperature, c.mixup, c.ema_guess) for row, c in by_row.items()}
    assert switches == {
        "mixmatch": (2, 0.5, "all", False), "k1": (1, 0.5, "all", False), "k3": (3, 0.5, "all", False),
        "k4": (4, 0.5, "all", False), "no-sharpen": (2, 1.0, "all", False), "ema-guess": (2, 0.5, "all", True),
        "no-mixup": (2, 0.5, "none", False), "mixup-labeled": (2, 0.5, "labeled", False),
        "mixup-unlabeled": (2, 0.5, "unlabeled", False), "mixup-separate": (2, 0.5, "separate", False)}
    assert all(c.alpha == default.alpha and c.lr == default.lr for c in by_row.values())


def test_print_commands_labels_and_supervised_with_pass_through(capsys, tmp_path):
    argv = ["--out", str(tmp_path), "--steps", "300", "--eval-every", "100", "--data-dir", "d", "--print-commands",
            "--model", "wrn-10-tiny", "--threads", "2"]
    labels = printed_commands(capsys, ["labels", *argv])
    assert [(c.n_labeled, c.seed) for c in labels] == [(n, s) for s in range(1, 6) for n in (250, 500, 1000, 2000,
                                                                                               4000)]
    assert all((c.steps, c.eval_every, c.data_dir, c.model, c.threads) == (300, 100, "d", "wrn-10-tiny", 2)
               for c in labels)
    assert all((c.lambda_u, c.rampup_kimg, c.algorithm) == (75.0, 1024, "mixmatch") for c in labels)
    supervised = printed_commands(capsys, ["supervised", *argv, "--seeds", "3"])
    assert [(c.algorithm, c.n_labeled, c.seed) for c in supervised] == [("supervised", n, 3) for n in paper.LABELS]


@pytest.mark.parametrize("argv, message", [
    (["table4", "--rows", "mixmatch", "bogus"], "unknown rows: bogus"),
    (["table4", "--K", "3"], "--K is set by the sweep"),
    (["table4", "--seed=3"], "--seed is set by the sweep"),
    (["table4", "--steps", "0"], "--steps must be at least 1"),
    (["labels", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    try:
        rc = main([argv[0], "--out", str(tmp_path), *argv[1:], "--print-commands"])
    except SystemExit as exit_:
        rc = exit_.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1


def test_relative_step_cost_by_hand():
    base = dict(n_valid=0, eval_every=1 << 30)  # evaluation cost negligible
    assert relative_step_cost(Config(**base)) == pytest.approx(1.0)  # K=2: (2 + 3·3) / 11
    assert relative_step_cost(Config(K=1, **base)) == pytest.approx(7 / 11)  # 1 + 3·2
    assert relative_step_cost(Config(K=4, **base)) == pytest.approx(19 / 11)  # 4 + 3·5
    assert relative_step_cost(Config(algorithm="supervised", **base)) == pytest.approx(3 / 11)
    # Default evaluation: both models over 5,000 + 10,000 images every 1,024 steps, on top of 64·11 per step.
    assert relative_step_cost(Config()) == pytest.approx((704 + 30000 / 1024) / 704)
    assert estimate_hours([Config(steps=7200, **base), Config(steps=3600, K=1, **base)], 0.5) == pytest.approx(
        1.0 + 0.5 * 7 / 11)


def test_plan_order_and_folders(tmp_path):
    runs = plan("table4", "S", seeds=[1, 2], rows=["k1", "mixmatch"], labels=[250])
    assert [(r.seed, r.row) for r in runs] == [(1, "k1"), (1, "mixmatch"), (2, "k1"), (2, "mixmatch")]
    assert runs[0].out == os.path.join("S", "table4", "k1@250", "seed1")
    assert set(TABLES) == {"table4", "labels", "supervised", "table5", "table6", "table7", "quick", "compare-quick",
                           "large", "stl10", "svhn", "svhn-extra", "slimming", "fixmatch", "compare-2020",
                           "compare-adaptive", "flexmatch"}


# ----- end to end -------------------------------------------------------------------------------------------
def _wait_until(predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def _group_gone(pgid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _steps(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line)["step"] for line in f]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills the sweep alone: needs PR_SET_PDEATHSIG")
def test_sweep_killed_mid_run_resumes_and_renders_with_paper(fake_cifar, tmp_path):
    out = str(tmp_path / "sweep")
    cmd = [sys.executable, SWEEP, "table4", "--out", out, "--rows", "mixmatch", "no-sharpen", "--labels", "250",
           "--seeds", "1", "2", "--steps", "60", "--eval-every", "20", "--data-dir", fake_cifar, *TINY_RUN]
    runs = [os.path.join(out, "table4", f"{row}@250", f"seed{s}") for s in (1, 2) for row in ("mixmatch",
                                                                                              "no-sharpen")]
    second = runs[1]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        caught = _wait_until(lambda: os.path.exists(os.path.join(second, "last.pt"))
                             and not os.path.exists(os.path.join(second, "summary.json")), proc)
        os.kill(proc.pid, signal.SIGKILL)  # the sweep alone: its train.py must die with it
        proc.wait()
        assert caught, "the second run was never caught between its first checkpoint and its end"
        assert _group_gone(proc.pid), "train.py outlived the killed sweep"
    finally:
        if proc.poll() is None or not _group_gone(proc.pid, 0.1):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert os.path.exists(os.path.join(runs[0], "summary.json"))
    assert not os.path.exists(os.path.join(second, "summary.json"))

    again = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[1/4] table4 mixmatch@250 seed1: finished at step 60, skipped" in again.stdout
    assert f"resuming {second} from step" in again.stderr
    for folder in runs:
        assert _steps(folder) == [20, 40, 60]  # nothing lost, nothing repeated
        with open(os.path.join(folder, "summary.json")) as f:
            assert json.load(f)["step"] == 60

    third = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert third.stdout.count("skipped") == 4 and "resuming" not in third.stderr

    table = subprocess.run([sys.executable, TABLES_PY, out], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    lines = {line.split(" | ")[0].strip("| "): line for line in table.stdout.splitlines() if "| 250 |" in line}
    assert set(lines) == {"mixmatch", "no-sharpen"}
    assert "| 11.80 |" in lines["mixmatch"] and "| 27.83 |" in lines["no-sharpen"]  # the paper's column
    assert all("| 2 | 60 (" in line for line in lines.values())  # 2 seeds, 60 steps
    for name in ("table.md", "table.csv"):
        assert os.path.exists(os.path.join(out, name))


def test_finished_step_needs_the_steps_and_the_same_configuration(tmp_path):
    run = plan("table4", str(tmp_path), rows=["k1"], labels=[250], steps=100)[0]
    cfg = run.config()
    os.makedirs(run.out)

    def write(step, **changes):
        with open(os.path.join(run.out, "summary.json"), "w") as f:
            json.dump({"step": step, "error": 50.0}, f)
        with open(os.path.join(run.out, "config.json"), "w") as f:
            json.dump({**cfg.to_dict(), **changes}, f)
        return finished_step(run, cfg)

    assert write(100) == 100
    assert write(120) == 120  # ran longer before: nothing left to do
    assert write(60) is None  # stopped short: train.py continues it
    assert write(100, threads=7, data_dir="elsewhere") == 100  # where and how it ran does not matter
    assert write(100, K=2) is None  # another experiment in that folder: train.py will refuse it


def test_paper_sweeps_follow_the_official_protocol(capsys, tmp_path):
    """runs/*.sh: every table on dataset.seed@N-1 (no held-out validation), fp32; Table 4 on split 3."""
    table4 = printed_commands(capsys, ["table4", "--out", str(tmp_path), "--labels", "250", "--print-commands"])
    assert {c.seed for c in table4} == {3}
    for table in ("labels", "supervised", "table4"):
        for c in printed_commands(capsys, [table, "--out", str(tmp_path), "--print-commands"]):
            assert (c.n_valid, c.amp) == (0, "none")
    kept = printed_commands(capsys, ["labels", "--out", str(tmp_path), "--print-commands", "--n-valid", "5000",
                                     "--amp=bf16"])
    assert all((c.n_valid, c.amp) == (5000, "bf16") for c in kept)  # the user's choice wins


def test_quick_reproduction_scales_its_schedule_to_the_run(capsys, tmp_path):
    """MixMatch and the supervised baseline on the same labels, steps and network, three seeds; λu's ramp-up and
    the evaluations scale with --steps."""
    cfgs = printed_commands(capsys, ["quick", "--out", str(tmp_path), "--print-commands"])
    assert [(c.algorithm, c.seed) for c in cfgs] == [(a, s) for s in (1, 2, 3) for a in ("mixmatch", "supervised")]
    assert {(c.model, c.n_labeled, c.steps, c.eval_every, c.n_valid, c.amp) for c in cfgs} == {
        ("wrn-16-1", 250, 600, 100, 0, "auto")}
    assert {(c.algorithm, c.rampup_images) for c in cfgs} == {("mixmatch", 2400 * 64), ("supervised", 0)}  # 4x the run
    short = printed_commands(capsys, ["quick", "--out", str(tmp_path), "--steps", "300", "--print-commands"])
    assert {(c.steps, c.eval_every, c.rampup_steps) for c in short} == {(300, 50, 1200), (300, 50, None)}
