"""``sweep.py slimming``: network slimming's Table 1 as train.py runs (base, sparsity, pruned and fine-tuned), a run
started only after the run it fine-tunes, and the table rendered beside the paper's."""
import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest
import torch

from semisup.compress.report import count_macs
from semisup.experiments import launch
from semisup.experiments.numbers import SLIMMING
from semisup.experiments.slurm import waves
from semisup.experiments.sweep import Run, plan
from semisup.models import create_model

from conftest import ROOT

SWEEP = os.path.join(ROOT, "scripts", "sweep.py")
# network-slimming's main.py, written out by hand: SGD 0.1, momentum 0.9, L2 weight decay 1e-4, batch 64, 160 epochs
# of 50,000 images (125,000 steps), the rate / 10 at epochs 80 and 120, no EMA; every training label; fp32.
RECIPE = ("--algorithm supervised --optimizer sgd --lr 0.1 --momentum 0.9 --wd-mode l2 --wd 1e-4 --lr-schedule step "
          "--lr-milestones 0.5,0.75 --batch-size 64 --ema-decay 0 --steps 125000")


def _flags(argv):
    """{flag: value} of an argv (flags without a value map to True); the last occurrence wins, as in argparse."""
    out, i = {}, 0
    while i < len(argv):
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[argv[i]], i = argv[i + 1], i + 2
        else:
            out[argv[i]], i = True, i + 1
    return out


def test_print_commands_are_the_original_recipe(tmp_path):
    runs = {run.row: run for run in plan("slimming", "S")}
    pruned = {(run.row.split("-cifar")[0], "cifar" + run.row.split("-cifar")[1].split("-")[0],
               int(run.row.rsplit("pruned", 1)[1])) for run in runs.values()
              if "-pruned" in run.row and not run.row.startswith("mixmatch")}
    assert pruned == {("vgg19", "cifar10", 70), ("densenet-40", "cifar10", 40), ("densenet-40", "cifar10", 70),
                      ("preresnet-164", "cifar10", 40), ("preresnet-164", "cifar10", 60),
                      ("vgg19", "cifar100", 50), ("densenet-40", "cifar100", 40), ("densenet-40", "cifar100", 60),
                      ("preresnet-164", "cifar100", 40), ("preresnet-164", "cifar100", 60)}
    recipe = _flags(RECIPE.split())
    for (dataset, model), (_, ratios) in SLIMMING.items():
        labels = {"cifar10": "49990", "cifar100": "49900"}[dataset]
        base = _flags(runs[f"{model}-{dataset}-base"].argv)
        assert base == {**recipe, "--dataset": dataset, "--model": model, "--n-labeled": labels, "--seed": "1",
                        "--out": os.path.join("S", "slimming", f"{model}-{dataset}-base@{labels}", "seed1"),
                        "--n-valid": "0", "--amp": "none"}
        sparse = _flags(runs[f"{model}-{dataset}-sparse"].argv)
        assert float(sparse.pop("--slim-lambda")) == (1e-4 if model == "vgg19" else 1e-5)
        assert {k: v for k, v in sparse.items() if k != "--out"} == {k: v for k, v in base.items() if k != "--out"}
        for ratio in ratios:
            run = runs[f"{model}-{dataset}-pruned{round(100 * ratio)}"]
            flags = _flags(run.argv)
            source = os.path.join("S", "slimming", f"{model}-{dataset}-sparse@{labels}", "seed1")
            assert run.needs == (source,) and flags.pop("--init") == os.path.join(source, "last.pt")
            assert (flags.pop("--init-prune"), float(flags.pop("--init-ratio"))) == ("slim", ratio)
            assert {k: v for k, v in flags.items() if k != "--out"} == {k: v for k, v in base.items() if k != "--out"}
    mixmatch = _flags(runs["mixmatch-wrn-28-2-cifar10-pruned40"].argv)
    assert mixmatch["--model"] == "wrn-28-2" and mixmatch["--n-labeled"] == "4000" and "--algorithm" not in mixmatch
    assert "--steps" not in mixmatch  # MixMatch's own 2^20 steps


def test_a_fine_tuning_row_brings_its_source_and_init_is_not_passed_through():
    rows = [run.row for run in plan("slimming", "S", rows=["vgg19-cifar10-pruned70"])]
    assert rows == ["vgg19-cifar10-sparse", "vgg19-cifar10-pruned70"]
    proc = subprocess.run([sys.executable, SWEEP, "slimming", "--out", "S", "--print-commands", "--init", "x.pt"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "set by the slimming sweep" in proc.stderr


def test_macs_are_the_papers_flops_halved():
    """The paper counts two FLOPs per multiply-accumulate: VGG-19 and ResNet-164 agree within 1 %. (DenseNet-40's
    5.33e8 is 6 % below the original PyTorch definition's count, which its parameter test pins.)"""
    torch.set_num_threads(1)
    for model in ("vgg19", "preresnet-164"):
        flops = SLIMMING[("cifar10", model)][0][2]
        assert count_macs(create_model(model, 10)) == pytest.approx(flops / 2, rel=0.01)


FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys, time
    out = sys.argv[sys.argv.index("--out") + 1]
    init = sys.argv[sys.argv.index("--init") + 1] if "--init" in sys.argv else None
    os.makedirs(out, exist_ok=True)
    if init and not os.path.exists(init):
        sys.exit(3)
    time.sleep(0.3)
    if "fail" in out:
        sys.exit(1)
    open(os.path.join(out, "last.pt"), "w").close()
    open(os.path.join(out, "done"), "w").close()
""")


def _chain(tmp_path, source_name):
    source = Run("t", "sparse", 1, 1, str(tmp_path / source_name), ("--out", str(tmp_path / source_name)))
    pruned = Run("t", "pruned", 1, 1, str(tmp_path / "pruned"),
                 ("--out", str(tmp_path / "pruned"), "--init", str(tmp_path / source_name / "last.pt")),
                 needs=(source.out,))
    other = Run("t", "other", 1, 1, str(tmp_path / "other"), ("--out", str(tmp_path / "other")))
    return [(pruned, None), (source, None), (other, None)]  # the dependent first: the launcher must wait anyway


def _finished(run, cfg):
    return 1 if os.path.exists(os.path.join(run.out, "done")) else None


def _blocked(run):
    return [need for need in run.needs if not os.path.exists(os.path.join(need, "done"))]


@pytest.mark.parametrize("parallel", [False, True])
def test_a_run_waits_for_its_source_and_is_given_up_when_that_fails(tmp_path, parallel):
    train_py = tmp_path / "fake_train.py"
    train_py.write_text(FAKE_TRAIN)
    logs = []
    slots = [{"env": {}, "cpus": sorted(os.sched_getaffinity(0))[:1], "argv": []}] * 2

    def run(runs):
        if parallel:
            return launch.execute_parallel(runs, str(train_py), _finished, slots, logs.append, _blocked)
        return [(r, rc, None) for r, rc in launch.execute(runs, str(train_py), _finished, logs.append, _blocked)]

    ok = tmp_path / "ok"
    failed = run(_chain(ok, "sparse"))
    if parallel:  # it waited for its source, then ran
        assert failed == [] and os.path.exists(ok / "pruned" / "done")
        with open(ok / "sparse" / launch.LOCAL_JSON) as f, open(ok / "pruned" / launch.LOCAL_JSON) as g:
            assert json.load(f)["ended"] <= json.load(g)["started"]
    else:  # in order: given up, as its source comes later
        assert [(r.row, rc) for r, rc, _ in failed] == [("pruned", None)]
        assert not os.path.exists(ok / "pruned")
    bad = tmp_path / "bad"
    failed = run(_chain(bad, "fail-sparse"))
    assert sorted((r.row, rc) for r, rc, _ in failed) == [("pruned", None), ("sparse", 1)]
    assert not os.path.exists(bad / "pruned") and os.path.exists(bad / "other" / "done")
    assert any("not started: it starts from" in line for line in logs)


def test_slurm_waves_wait_on_the_array_tasks_they_start_from():
    a, b = Run("t", "a", 1, 1, "A", ()), Run("t", "b", 1, 1, "B", ())
    c = Run("t", "c", 1, 1, "C", (), needs=("A",))
    d = Run("t", "d", 1, 1, "D", (), needs=("Q",))  # Q: queued from an earlier submission
    job_of = {"Q": "7_0"}
    seen = []
    for wave, after in waves([(c, 0), (a, 0), (b, 0), (d, 0)], job_of):
        seen.append(([run.row for run, _ in wave], after))
        for run, _ in wave:
            job_of[run.out] = f"9_{run.row}"
    assert seen == [(["a", "b", "d"], ["7_0"]), (["c"], ["9_a"])]


def test_a_tiny_slimming_sweep_runs_in_order_and_renders_beside_the_paper(fake_cifar, tmp_path):
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, SWEEP, "slimming", "--out", str(out), "--rows", "vgg19-cifar10-pruned70",
                           "--labels", "40", "--steps", "2", "--eval-every", "2", "--data-dir", fake_cifar,
                           "--parallel", "2", "--batch-size", "8", "--eval-batch-size", "64", "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    folder = out / "slimming" / "vgg19-cifar10-pruned70@40" / "seed1"
    with open(folder / "init_prune.json") as f:
        record = json.load(f)
    assert record["ratio"] == 0.7 and record["params"]["after"] < record["params"]["before"] == 20035018
    with open(out / "slimming" / "slimming.md") as f:
        table = f.read()
    line = next(row for row in table.splitlines() if row.startswith("| vgg19-cifar10 | 70 %"))
    assert "/ 6.34" in line and "/ 6.20" in line and "/ 32.54" in line and "/ 20.04 M → 2.30 M" in line
    assert f"{record['params']['after'] / 1e6:.2f} M" in line and "/ 398.50 M → 195.50 M" in line
    assert shlex.quote(str(folder)) in proc.stdout or str(folder) in proc.stdout
