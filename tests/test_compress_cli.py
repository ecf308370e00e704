"""``python -m semisup.compress`` end to end on a tiny trained checkpoint."""
import json
import os
import subprocess
import sys

import pytest
import torch

from semisup.checkpoint import load_checkpoint
from semisup.commands.compress import main as compress
from semisup.compress.report import count_params
from semisup.masks import sparsity
from semisup.models import model_from_arch
from semisup.runner import main as train

from conftest import ROOT, TINY, train_tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fake_cifar):
    return train_tiny(tmp_path_factory, fake_cifar, "slimrun", 4, "--slim-lambda", "1e-3")


def run_compress(checkpoint, out, *flags):
    rc = compress(["--checkpoint", checkpoint, "--out", str(out), "--latency-repeats", "1", "--threads", "1",
                   *flags])
    assert rc == 0
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f), load_checkpoint(os.path.join(out, "pruned.pt"))


def rebuild(state, part="model"):
    model = model_from_arch(state["model_name"], state["arch"]).eval()
    model.load_state_dict(state[part])  # strict: a plain semisup checkpoint
    return model


def test_slim_writes_a_smaller_ordinary_checkpoint_and_onnx(trained, tmp_path, fake_cifar):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator
    report, state = run_compress(trained, tmp_path, "--method", "slim", "--ratio", "0.5", "--prune-residual",
                                 "--onnx")
    for key in ("model_name", "arch", "model", "ema", "config"):
        assert key in state
    model, ema = rebuild(state), rebuild(state, "ema")
    assert report["params"]["after"] == count_params(model) < report["params"]["before"]
    assert report["macs"]["after"] < report["macs"]["before"]
    assert set(report["latency_ms"]) == {"batch_1", "batch_256"}
    assert all(v["before"] > 0 and v["after"] > 0 for v in report["latency_ms"].values())
    assert report["sparsity"] == {"before": 0.0, "after": 0.0}
    assert 0 <= report["test_acc"]["before"] <= 100 and 0 <= report["test_acc"]["after"] <= 100
    assert state["arch"]["inner"] == report["arch"]["after"]["inner"]
    assert sum(state["arch"]["inner"]) == round(0.5 * sum(report["arch"]["before"]["inner"]))
    x = torch.randn(3, 3, 32, 32)  # exported with a batch of 2: the batch dimension is dynamic
    assert torch.equal(model(x), ema(x))
    graph = onnx.load(os.path.join(tmp_path, "pruned.onnx"))
    onnx.checker.check_model(graph)
    out = ReferenceEvaluator(graph).run(None, {"images": x.numpy()})[0]
    assert torch.allclose(torch.from_numpy(out), model(x), atol=1e-4)
    # fine-tuning starts from it (supervised, for comparison; MixMatch is the default)
    ft = tmp_path / "ft"
    assert train(TINY + ["--data-dir", fake_cifar, "--out", str(ft), "--steps", "2", "--eval-every", "2",
                         "--algorithm", "supervised", "--init", os.path.join(tmp_path, "pruned.pt")]) == 0
    assert load_checkpoint(os.path.join(ft, "last.pt"))["arch"] == state["arch"]


def test_magnitude_masks_and_remove(trained, tmp_path):
    report, state = run_compress(trained, tmp_path / "m", "--method", "magnitude", "--ratio", "0.5", "--no-eval")
    n = sum(m.numel() for m in state["masks"].values())
    assert report["sparsity"]["after"] == pytest.approx(round(0.5 * n) / n)
    assert report["params"]["after"] == report["params"]["before"]
    assert report["macs"]["after"] == report["macs"]["before"]  # masks save nothing
    assert report["nonzero_params"]["after"] < report["nonzero_params"]["before"]
    assert report["test_acc"] == {"before": None, "after": None}
    assert sparsity(rebuild(state)) == report["sparsity"]["after"]
    _, removed = run_compress(trained, tmp_path / "r", "--method", "magnitude", "--ratio", "0.5", "--no-eval",
                              "--remove")
    assert "masks" not in removed
    assert sparsity(rebuild(removed)) == report["sparsity"]["after"]


def test_taylor_uses_the_training_loss(trained, tmp_path):
    report, state = run_compress(trained, tmp_path, "--method", "taylor", "--ratio", "0.3", "--scope", "local",
                                 "--taylor-batches", "2")
    for key, mask in state["masks"].items():
        assert int((~mask).sum()) == round(0.3 * mask.numel()), key
    assert report["test_acc"]["after"] is not None


@pytest.mark.parametrize("flags", [["--method", "slim", "--ratio", "1.5"],
                                   ["--method", "magnitude", "--prune-residual"],
                                   ["--method", "slim", "--remove"],
                                   ["--method", "slim", "--ratio", "0.95", "--max-layer-ratio", "0.5"]])
def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, capsys, flags):
    assert compress(["--checkpoint", trained, "--out", str(tmp_path), "--no-eval", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m semisup.compress: error:") and "\n" not in err


def test_module_entry_point_refuses_a_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "semisup.compress", "--checkpoint", str(tmp_path / "nope.pt"),
                           "--method", "slim", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no such checkpoint file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("word", ["sensitivity", "study", "lottery"])
def test_help_names_every_subcommand_and_each_runs(word, capsys):
    """The epilog is made from SUBCOMMANDS: each registered word is named in --help and dispatches to its own
    parser (the three known ones are listed here too, so dropping one from the table fails)."""
    from semisup.commands.compress import SUBCOMMANDS, build_parser

    assert word in SUBCOMMANDS
    text = " ".join(build_parser().format_help().split())
    for name, cmd in SUBCOMMANDS.items():
        assert f"python -m semisup.compress {name} {cmd.usage}:" in text
    with pytest.raises(SystemExit) as stop:
        compress([word, "--help"])
    assert stop.value.code == 0 and f"python -m semisup.compress {word}" in capsys.readouterr().out
