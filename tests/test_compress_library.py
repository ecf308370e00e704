"""Compression as a library: the Python example in docs/compression.md runs as written, and ``prune`` gives what
the pruning command writes, without any flag parsing."""
import contextlib
import io
import os
import re

import pytest
import torch

from semisup.checkpoint import load_checkpoint
from semisup.commands.compress import main as compress
from semisup.compress import PruneSpec, load_source, prune
from semisup.config import ConfigError

from conftest import train_tiny

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "compression.md")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fake_cifar):
    return train_tiny(tmp_path_factory, fake_cifar, "library", 2)


def doc_example() -> str:
    """The python block of the "From Python" section."""
    with open(DOC, encoding="utf-8") as f:
        section = f.read().split("### From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_docs_example_runs_on_a_checkpoint(trained):
    code = doc_example()
    assert '"runs/cifar10@250/last.pt"' in code
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code.replace('"runs/cifar10@250/last.pt"', repr(trained)), {})
    lines = printed.getvalue().splitlines()
    macs, params = (eval(part) for part in re.match(r"(\{.*?\}) (\{.*\})", lines[0]).groups())
    assert macs["after"] < macs["before"] and params["after"] < params["before"]
    assert 0.0 <= float(lines[1]) <= 100.0
    assert set(eval(lines[2])) == {"batch_1"}


@pytest.mark.parametrize("method", ["l1-filter", "magnitude"])
def test_prune_gives_what_the_command_writes(trained, tmp_path, method):
    assert compress(["--checkpoint", trained, "--method", method, "--ratio", "0.4", "--out", str(tmp_path),
                     "--latency-repeats", "1", "--threads", "1", "--no-eval"]) == 0
    written = load_checkpoint(str(tmp_path / "pruned.pt"))
    source = load_source(trained)
    before = {k: v.clone() for k, v in source.model.state_dict().items()}
    pruned = prune(source.model, PruneSpec(method, ratio=0.4))
    assert dict(pruned.model.arch) == written["arch"]
    assert pruned.weights.keys() == written["model"].keys()
    assert all(torch.equal(pruned.weights[k], written["model"][k]) for k in pruned.weights)
    assert pruned.masks.keys() == written.get("masks", {}).keys()
    assert all(torch.equal(v, source.model.state_dict()[k]) for k, v in before.items())  # the input is untouched


@pytest.mark.parametrize("spec, message", [
    (PruneSpec("prune-all"), "--method must be one of"),
    (PruneSpec("slim", ratio=1.0), "--ratio must be in [0, 1)"),
    (PruneSpec("magnitude", prune_residual=True), "--prune-residual needs --method slim or l1-filter"),
    (PruneSpec("slim", remove_masks=True), "--remove applies to --method magnitude or taylor"),
])
def test_a_bad_specification_is_one_config_error(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        spec.checked()


def test_taylor_without_its_loss_is_refused(trained):
    with pytest.raises(ConfigError, match="taylor needs the training loss"):
        prune(load_source(trained).model, PruneSpec("taylor"))
