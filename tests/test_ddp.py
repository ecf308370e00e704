"""DDP through torchrun with the gloo backend on the CPU: 2 processes, generated data, a tiny model.

Each launch costs several seconds of process start-up, so one test makes two launches and checks everything.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from semisup.algorithms.base import Rows
from semisup.algorithms.fixmatch import UnlabeledRows
from semisup.algorithms.remixmatch import ReMixMatchRows
from semisup.batch import Batch
from semisup.checkpoint import load_checkpoint
from semisup.models import create_model

from accum_support import concat_rank_batches, single_process_trainer, strip_bn, tiny_config
from conftest import ROOT, TINY

pytestmark = pytest.mark.slow
TESTS = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(TESTS, "ddp_accum_worker.py")


def torchrun(worker, record, *flags, out, prepare=None, nproc=2):
    """Run ``worker RECORD FLAGS --out OUT`` under torchrun on a free port (``prepare()`` first, if given);
    returns the finished process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, TESTS]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", worker,
           record, *flags, "--out", out]
    if prepare:
        prepare()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _replay_one_process(fake_cifar, ranks, accum: int, steps) -> dict:
    """One process, ``accum`` micro-batches, over the global batches the ranks drew (the ranks' rows in order)."""
    cfg = tiny_config(fake_cifar, accum_steps=accum)
    model = strip_bn(create_model("wrn-10-tiny"))
    model.load_state_dict(ranks[0]["initial"])
    trainer = single_process_trainer(cfg, model)
    for step in steps:
        assert trainer.step == step
        trainer.apply_batch(concat_rank_batches([Batch(**r["batches"][step]) for r in ranks], cfg.K))
    return {"final": trainer.model.state_dict(), "ema": trainer.ema.state_dict()}


def test_ddp_accum_matches_one_process_and_resumes_exactly(fake_cifar, tmp_path):
    """train.py under torchrun, 2 ranks x 2 micro-batches (2 labeled images each), batch-norm-free model.

    Both ranks end with identical weights, equal to one process running 4 micro-batches over the same global
    batches; only rank 0 writes; the checkpoint holds each rank's RNG state, so a run resumed from step 2 draws
    the same batches on every rank and ends bit-identical to the uninterrupted run.
    """
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    flags = TINY + ["--data-dir", fake_cifar, "--model", "wrn-10-tiny-nobn", "--accum-steps", "2", "--steps", "4",
                    "--eval-every", "2"]
    proc = torchrun(WORKER, str(tmp_path / "straight"), *flags, out=str(straight))
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1 and printed[0]["step"] == 4  # only rank 0 prints the summary
    with open(straight / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [2, 4]
    assert len([n for n in os.listdir(straight) if n.startswith("events.out")]) == 1

    ranks = [torch.load(f"{straight}-rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert not torch.equal(ranks[0]["batches"][0]["x"], ranks[1]["batches"][0]["x"])  # each rank its own rows
    for name, tensor in ranks[0]["final"].items():
        assert torch.equal(tensor, ranks[1]["final"][name]), name
        assert not torch.equal(tensor, ranks[0]["initial"][name]), name
    one = _replay_one_process(fake_cifar, ranks, accum=4, steps=range(4))
    for key in ("final", "ema"):
        for name, tensor in one[key].items():
            torch.testing.assert_close(tensor, ranks[0][key][name], rtol=0, atol=1e-5)

    final = load_checkpoint(str(straight / "last.pt"))
    assert len(final["rng"]) == 2 and not torch.equal(final["rng"][0]["torch"], final["rng"][1]["torch"])

    def as_at_step_2():  # the run as it stood at step 2, resumed under torchrun to step 4
        resumed.mkdir()
        shutil.copy(straight / "config.json", resumed)
        shutil.copy(straight / "last-1.pt", resumed / "last.pt")
        assert load_checkpoint(str(resumed / "last.pt"))["step"] == 2

    torchrun(WORKER, str(tmp_path / "resumed"), *flags, out=str(resumed), prepare=as_at_step_2)
    for r in range(2):
        again = torch.load(f"{resumed}-rank{r}.pt", weights_only=True)
        assert sorted(again["batches"]) == [2, 3]
        for step in (2, 3):
            assert torch.equal(again["batches"][step]["x"], ranks[r]["batches"][step]["x"]), (r, step)
    again = load_checkpoint(str(resumed / "last.pt"))
    assert again["step"] == 4
    for key in ("model", "ema"):
        for name, tensor in final[key].items():
            assert torch.equal(again[key][name], tensor), (key, name)


@pytest.mark.parametrize("algorithm", ["vat", "mean-teacher"])
def test_ddp_baselines_match_one_process(fake_cifar, tmp_path, algorithm):
    """VAT (its perturbation found with gradients for the input only, outside DDP) and Mean Teacher (the EMA
    teacher) under torchrun, 2 ranks x 2 micro-batches: both ranks end identical, and equal to one process running
    4 micro-batches over the rows the ranks drew (a rank's rows, then the next rank's)."""
    flags = TINY + ["--data-dir", fake_cifar, "--model", "wrn-10-tiny-nobn", "--accum-steps", "2", "--steps", "3",
                    "--eval-every", "3", "--algorithm", algorithm, "--rampup-steps", "1"]
    torchrun(WORKER, str(tmp_path / "run"), *flags, out=str(tmp_path / "run"))
    ranks = [torch.load(f"{tmp_path / 'run'}-rank{r}.pt", weights_only=True) for r in range(2)]
    for name, tensor in ranks[0]["final"].items():
        assert torch.equal(tensor, ranks[1]["final"][name]), name
        assert not torch.equal(tensor, ranks[0]["initial"][name]), name
    cfg = tiny_config(fake_cifar, accum_steps=4, algorithm=algorithm, rampup_steps=1)
    model = strip_bn(create_model("wrn-10-tiny"))
    model.load_state_dict(ranks[0]["initial"])
    trainer = single_process_trainer(cfg, model)
    for step in range(3):
        parts = [r["batches"][step] for r in ranks]
        rows = {k: torch.cat([p["rows"][k] for p in parts]) for k in parts[0]["rows"]}
        trainer.apply_batch(Rows(rows, sum(p["full"] for p in parts)))
    for key, state in (("final", trainer.model.state_dict()), ("ema", trainer.ema.state_dict())):
        for name, tensor in state.items():
            torch.testing.assert_close(tensor, ranks[0][key][name], rtol=0, atol=1e-5)


def _global_batch(algorithm: str, parts: list, K: int):
    """One process's batch holding the ranks' rows in rank order, in the layout its micro-batches split."""
    if algorithm in ("fixmatch", "uda"):
        fields = [p["fields"] for p in parts]
        cat = {k: torch.cat([f[k] for f in fields]) for k in ("x", "y", "weak", "strong")}
        return UnlabeledRows(**cat, full_x=sum(f["full_x"] for f in fields), full_u=sum(f["full_u"] for f in fields))
    mixed = concat_rank_batches([Batch(**p["mixed"]) for p in parts], K + 1)
    rows = {k: torch.cat([p["rows"][k] for p in parts]) for k in parts[0]["rows"]}
    return ReMixMatchRows(mixed, **rows)


@pytest.mark.parametrize("algorithm, flags", [("fixmatch", ("--strong-aug", "cta", "--uratio", "2")),
                                              ("remixmatch", ("--K", "2", "--dbuf", "4"))])
def test_ddp_2020_methods_match_one_process(fake_cifar, tmp_path, algorithm, flags):
    """FixMatch (CTA: its probes gathered over the ranks) and ReMixMatch (its alignment averaged over the ranks)
    under torchrun, 2 ranks x 2 micro-batches: the ranks end with the same weights and the same algorithm state
    (CTAugment's weights, the alignment buffer), and one process running 4 micro-batches over the rows the ranks
    drew ends with the same weights."""
    argv = TINY + ["--data-dir", fake_cifar, "--model", "wrn-10-tiny-nobn", "--accum-steps", "2", "--steps", "2",
                   "--eval-every", "2", "--algorithm", algorithm, *flags]
    torchrun(WORKER, str(tmp_path / "run"), *argv, out=str(tmp_path / "run"))
    ranks = [torch.load(f"{tmp_path / 'run'}-rank{r}.pt", weights_only=True) for r in range(2)]
    for name, tensor in ranks[0]["final"].items():
        assert torch.equal(tensor, ranks[1]["final"][name]), name
    flat = [torch.cat([t.flatten().float() for t in _tensors(r["algorithm"])]) for r in ranks]
    assert len(flat[0]) > 0 and torch.equal(flat[0], flat[1])
    options = dict(zip(flags[::2], flags[1::2]))
    cfg = tiny_config(fake_cifar, accum_steps=4, algorithm=algorithm, steps=2,  # the cosine schedule's length
                      **{k[2:].replace("-", "_"): (v if k == "--strong-aug" else int(v)) for k, v in options.items()})
    model = strip_bn(create_model("wrn-10-tiny"))
    if algorithm == "remixmatch":
        model.add_rotation_head()
    model.load_state_dict(ranks[0]["initial"])
    trainer = single_process_trainer(cfg, model)
    for step in range(2):
        trainer.apply_batch(_global_batch(algorithm, [r["batches"][step] for r in ranks], cfg.K or 0))
    for name, tensor in trainer.model.state_dict().items():
        torch.testing.assert_close(tensor, ranks[0]["final"][name], rtol=0, atol=1e-5)


def _tensors(state):
    """Every tensor of a nested state (dicts and lists), in a fixed order."""
    if torch.is_tensor(state):
        return [state]
    items = sorted(state.items()) if isinstance(state, dict) else enumerate(state) if isinstance(state, list) else []
    return [t for _, v in items for t in _tensors(v)]


@pytest.mark.parametrize("algorithm, flags", [
    ("flexmatch", ("--accum-steps", "1", "--confidence", "0.15")),  # low τ: images get marked by a tiny network
    ("freematch", ("--accum-steps", "2", "--lambda-fair", "0.5"))])
def test_ddp_curriculum_is_one_for_all_ranks_and_matches_one_process(fake_cifar, tmp_path, algorithm, flags):
    """FlexMatch (the official path: the selection from the joint pass, one micro-batch) and FreeMatch (two
    micro-batches: the selection from the whole step's extra pass, the fairness term linearised) under torchrun:
    every rank ends with the same curriculum (FlexMatch's marks gathered by dataset index; FreeMatch's EMAs from
    every rank's rows) and the same weights, equal to one process given the ranks' rows as one global batch."""
    from semisup.algorithms.adaptive import AdaptiveRows

    argv = TINY + ["--data-dir", fake_cifar, "--model", "wrn-10-tiny-nobn", "--steps", "3", "--eval-every", "3",
                   "--algorithm", algorithm, "--uratio", "2", *flags]
    torchrun(WORKER, str(tmp_path / "run"), *argv, out=str(tmp_path / "run"))
    ranks = [torch.load(f"{tmp_path / 'run'}-rank{r}.pt", weights_only=True) for r in range(2)]
    for name, tensor in ranks[0]["final"].items():
        assert torch.equal(tensor, ranks[1]["final"][name]), name
    states = [{k: v for k, v in r["algorithm"].items() if torch.is_tensor(v)} for r in ranks]
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
    if algorithm == "flexmatch":
        assert (states[0]["marks"] >= 0).sum() > 0  # the curriculum has marks to agree on
    options = dict(zip(flags[::2], flags[1::2]))
    options.pop("--accum-steps")
    cfg = tiny_config(fake_cifar, algorithm=algorithm, steps=3, uratio=2,
                      **{k[2:].replace("-", "_"): float(v) for k, v in options.items()})
    model = strip_bn(create_model("wrn-10-tiny"))
    model.load_state_dict(ranks[0]["initial"])
    trainer = single_process_trainer(cfg, model)
    for step in range(3):
        fields = [r["batches"][step]["fields"] for r in ranks]
        cat = {k: torch.cat([f[k] for f in fields]) for k in ("x", "y", "weak", "strong", "index")}
        trainer.algorithm.start_step(step, cat["index"])
        trainer.apply_batch(AdaptiveRows(**cat, full_x=sum(f["full_x"] for f in fields),
                                         full_u=sum(f["full_u"] for f in fields)))
    for name, tensor in trainer.model.state_dict().items():  # three SGD steps of summation-order rounding
        torch.testing.assert_close(tensor, ranks[0]["final"][name], rtol=0, atol=5e-5)
    one = trainer.algorithm.state_dict()
    for key, value in states[0].items():
        torch.testing.assert_close(one[key].float(), value.float(), rtol=0, atol=1e-6)
