"""``train.py --init C --init-prune M --init-ratio R``: the compress command's pruning, then fine-tuning, in one run."""
import json
import os

import pytest
import torch

from semisup.checkpoint import load_checkpoint
from semisup.commands.compress import main as compress
from semisup.compress.init_prune import pruned_init
from semisup.config import Config, build_parser, validate
from semisup.data import prepare_from_config
from semisup.runner import main as train

from conftest import TINY, train_tiny

FT = ["--algorithm", "supervised", "--steps", "2", "--eval-every", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fake_cifar):
    return train_tiny(tmp_path_factory, fake_cifar, "source", 3, "--slim-lambda", "1e-3")


def _read(path):
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("method", ["slim", "magnitude"])
def test_the_run_starts_from_what_the_compress_command_writes(trained, fake_cifar, tmp_path, method):
    assert compress(["--checkpoint", trained, "--method", method, "--ratio", "0.4", "--out", str(tmp_path / "c"),
                     "--latency-repeats", "1", "--threads", "1", "--data-dir", fake_cifar]) == 0
    report, pruned = _read(tmp_path / "c" / "report.json"), load_checkpoint(str(tmp_path / "c" / "pruned.pt"))
    out = tmp_path / "ft"
    flags = TINY + ["--data-dir", fake_cifar, "--out", str(out), "--init", trained, "--init-prune", method,
                    "--init-ratio", "0.4"]
    cfg = validate(Config(**vars(build_parser().parse_args(flags + FT))))
    model, masks, record = pruned_init(cfg, prepare_from_config(cfg), load_checkpoint(trained))
    assert model.arch == pruned["arch"] and record["arch"]["after"] == report["arch"]["after"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, pruned["ema"][key]), key
    assert {k: torch.equal(m, pruned["masks"][k]) for k, m in masks.items()} == \
        {k: True for k in pruned.get("masks", {})}
    for field in ("params", "macs", "sparsity", "test_acc"):
        assert record[field] == report[field], field

    assert train(flags + FT) == 0
    written = _read(out / "init_prune.json")
    assert written["test_acc"] == report["test_acc"] and written["method"] == method
    state = load_checkpoint(str(out / "last.pt"))
    assert state["arch"] == pruned["arch"]
    if method == "magnitude":  # the masks stay on while fine-tuning
        zeros = sum(int((~m).sum()) for m in state["masks"].values())
        assert zeros == sum(int((~m).sum()) for m in pruned["masks"].values()) > 0
        for key, mask in state["masks"].items():
            assert not state["ema"][key][~mask].any() and not state["model"][key][~mask].any()


def test_a_resumed_run_keeps_its_record(trained, fake_cifar, tmp_path):
    out = tmp_path / "ft"
    flags = TINY + ["--data-dir", fake_cifar, "--out", str(out), "--init", trained, "--init-prune", "slim",
                    "--init-ratio", "0.3", "--algorithm", "supervised", "--eval-every", "2"]
    assert train(flags + ["--steps", "2"]) == 0
    first = os.stat(out / "init_prune.json").st_mtime_ns
    assert train(flags + ["--steps", "4"]) == 0
    assert os.stat(out / "init_prune.json").st_mtime_ns == first
    assert load_checkpoint(str(out / "last.pt"))["step"] == 4


@pytest.mark.parametrize("flags, message", [
    (["--init-prune", "slim"], "--init-prune slim prunes the --init checkpoint; pass --init"),
    (["--init-ratio", "1"], "--init-ratio must be in [0, 1) (got 1.0)"),
])
def test_bad_input_is_one_line(fake_cifar, tmp_path, capsys, flags, message):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        train(TINY + ["--data-dir", fake_cifar, "--out", str(out), *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
