"""Every bad input gives one line on stderr, exit code 2 and writes nothing; docs/troubleshooting.md lists each.

Each case runs ``train.py`` in a subprocess (several at a time, so the file stays fast) against generated data,
damaged copies of it, and hand-made checkpoints: of another model, of another class count, not a checkpoint at
all, or carrying a pickled code payload that must never run.
"""
import contextlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from semisup import checkpoint, runner
from semisup.config import parse_args
from semisup.models import create_model

from conftest import ROOT, TINY, write_fake_cifar
from datasets_support import write_image_folder

TRAIN = os.path.join(ROOT, "train.py")


class _Payload:
    """Creates a file when unpickled: what a malicious data or checkpoint file would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def _rewrite_batch(folder, name, **entry):
    path = os.path.join(folder, "cifar-10-batches-py", name)
    with open(path, "rb") as f:
        batch = pickle.load(f)
    with open(path, "wb") as f:
        pickle.dump({**batch, **entry}, f)


def _damaged_data(root, marker):
    """Copies of the generated data, each with one defect."""
    folders = {}
    for name in ("garbage", "payload", "shape", "labels"):
        folders[name] = write_fake_cifar(os.path.join(root, f"data-{name}"))
    with open(os.path.join(folders["garbage"], "cifar-10-batches-py", "data_batch_3"), "wb") as f:
        f.write(b"these bytes are not a pickle")
    _rewrite_batch(folders["payload"], "data_batch_1", data=_Payload(marker))
    _rewrite_batch(folders["shape"], "data_batch_2", data=np.zeros((120, 32, 32, 3), np.uint8))
    _rewrite_batch(folders["labels"], "test_batch", labels=[10] * 200)
    return folders


def _bad_folders(root):
    """Image folders (train/, unlabeled/, test/), each with one defect the loader must name."""
    folders = {name: write_image_folder(os.path.join(root, f"images-{name}"), per_class=4, test_per_class=1,
                                        unlabeled=2, odd_size=(16, 16))
               for name in ("one class", "test class", "unreadable", "too few")}
    for name in ("dog", "fox"):
        shutil.rmtree(os.path.join(folders["one class"], "train", name))
    os.makedirs(os.path.join(folders["test class"], "test", "wolf"))
    shutil.copy(os.path.join(folders["test class"], "test", "cat", "000.jpg"),
                os.path.join(folders["test class"], "test", "wolf", "000.jpg"))
    for name in ("000.jpg", "001.png"):
        os.remove(os.path.join(folders["too few"], "train", "dog", name))
    with open(os.path.join(folders["unreadable"], "train", "dog", "002.png"), "wb") as f:
        f.write(b"not a PNG at all")
    return folders


def _checkpoint(path, model_name, num_classes):
    model = create_model(model_name, num_classes)
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "model": model.state_dict(),
                "model_name": model_name, "arch": model.arch}, path)
    return path


def _files(root, marker):
    """Checkpoint-like files: another model, another class count, not a checkpoint, a code payload."""
    files = {"other_model": _checkpoint(os.path.join(root, "wrn-28-2.pt"), "wrn-28-2", 10),
             "other_classes": _checkpoint(os.path.join(root, "tiny-100.pt"), "wrn-10-tiny", 100),
             "not_checkpoint": os.path.join(root, "notes.pt"), "payload": os.path.join(root, "payload.pt")}
    with open(files["not_checkpoint"], "w") as f:
        f.write("training notes, not weights\n")
    torch.save({"format": checkpoint.FORMAT, "model": _Payload(marker), "model_name": "wrn-10-tiny",
                "arch": {}}, files["payload"])
    return files


def _run_folder(w, name, args, last=None):
    """A run folder whose config.json is ``args``' configuration, optionally with a given last.pt."""
    folder = os.path.join(w.root, name)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(parse_args(args).to_dict(), f)
    if last:
        shutil.copy(last, os.path.join(folder, "last.pt"))
    return folder


def _workspace(root, data, marker):
    with open(os.path.join(root, "a-file"), "w") as f:
        f.write("x")
    flex = TINY + ["--data-dir", data, "--steps", "2", "--eval-every", "1", "--algorithm", "flexmatch", "--uratio",
                   "1"]
    files = {**_files(root, marker), "flexmatch_other_set": _curriculum_of_another_set(root, flex)}
    return SimpleNamespace(root=root, marker=marker, base=TINY + ["--data-dir", data, "--steps", "2"], flex=flex,
                           bad=_damaged_data(root, marker), files=files, folders=_bad_folders(root))


def _curriculum_of_another_set(root, flex):
    """A FlexMatch checkpoint of this configuration whose marks cover 10 images, not this unlabeled set."""
    out = os.path.join(root, "flex-source")
    assert runner.main(flex + ["--steps", "1", "--out", out]) == 0
    state = checkpoint.load_checkpoint(os.path.join(out, "last.pt"))
    state["algorithm"]["marks"] = state["algorithm"]["marks"][:10]
    os.makedirs(os.path.join(root, "flex-other"))
    checkpoint.save_checkpoint(state, os.path.join(root, "flex-other"), 1)
    return os.path.join(root, "flex-other", "last.pt")


def _folder(w, name, n_labeled="6"):
    return TINY + ["--dataset", f"folder:{w.folders[name]}", "--n-labeled", n_labeled, "--n-valid", "0",
                   "--steps", "2"]


# (name, flags built from the workspace, fragment of the expected message); a fresh --out is added if none given.
# CLI_CASES run train.py in a subprocess; IN_PROCESS_CASES (more variants of the same checks) call runner.main,
# which spares the 2 s that importing torch costs each subprocess.
CLI_CASES = [
    ("unknown flag", lambda w: w.base + ["--bogus"], "unrecognized arguments: --bogus"),
    ("wrong type", lambda w: w.base + ["--K", "two"], "argument --K: invalid int value: 'two'"),
    ("T zero", lambda w: w.base + ["--T", "0"], "--T must be positive (got 0.0)"),
    ("T negative", lambda w: w.base + ["--T", "-0.5"], "--T must be positive (got -0.5)"),
    ("K zero", lambda w: w.base + ["--K", "0"], "--K must be at least 1 (got 0)"),
    ("alpha zero", lambda w: w.base + ["--alpha", "0"], "--alpha must be positive (got 0.0)"),
    ("lr zero", lambda w: w.base + ["--lr", "0"], "--lr must be positive (got 0.0)"),
    ("lr negative", lambda w: w.base + ["--lr", "-0.1"], "--lr must be positive (got -0.1)"),
    ("steps zero", lambda w: w.base + ["--steps", "0"], "--steps must be at least 1 (got 0)"),
    ("accumulation", lambda w: w.base + ["--accum-steps", "3"], "--accum-steps 3 does not divide --batch-size 8"),
    ("keep zero", lambda w: w.base + ["--keep-checkpoints", "0"], "--keep-checkpoints must be at least 1 (got 0)"),
    ("missing data", lambda w: TINY + ["--data-dir", os.path.join(w.root, "nowhere")], "CIFAR-10 not found in"),
    ("garbage batch", lambda w: TINY + ["--data-dir", w.bad["garbage"]], "malformed CIFAR batch file"),
    ("image shape", lambda w: TINY + ["--data-dir", w.bad["shape"]], "expected uint8 images of shape [N, 3072]"),
    ("label range", lambda w: TINY + ["--data-dir", w.bad["labels"]], "labels must lie in [0, 9], found 10..10"),
    ("n-labeled multiple", lambda w: w.base + ["--n-labeled", "45"], "must be a multiple of the 10 classes"),
    ("n-labeled too large", lambda w: w.base + ["--n-labeled", "600"],
     "--n-labeled (600) + --n-valid (100) must be smaller than"),
    ("n-valid too large", lambda w: w.base + ["--n-valid", "600"],
     "--n-labeled (40) + --n-valid (600) must be smaller than"),
    ("out other config", lambda w: w.base + ["--out", _run_folder(w, "run-lr", w.base + ["--lr", "0.5"])],
     "holds a run with another configuration (lr: 0.5 -> 0.002)"),
    ("resume other model", lambda w: w.base + ["--out", _run_folder(w, "run-m", w.base, w.files["other_model"])],
     "holds a wrn-28-2 model for 10 classes"),
    ("resume not checkpoint",
     lambda w: w.base + ["--out", _run_folder(w, "run-n", w.base, w.files["not_checkpoint"])],
     "no readable checkpoint in"),
    ("init other classes", lambda w: w.base + ["--init", w.files["other_classes"]],
     "model has 100 classes, the data has 10"),
    ("init payload", lambda w: w.base + ["--init", w.files["payload"]], "refused: it holds pickled Python objects"),
]
IN_PROCESS_CASES = [
    ("payload batch", lambda w: TINY + ["--data-dir", w.bad["payload"]], "only numpy arrays are allowed"),
    ("unknown algorithm", lambda w: w.base + ["--algorithm", "noisy-student"], "argument --algorithm: invalid choice"),
    ("flag of another algorithm", lambda w: w.base + ["--algorithm", "vat", "--K", "3"],
     "--K is an option of mixmatch, remixmatch, not of vat"),
    ("threshold one", lambda w: w.base + ["--algorithm", "pseudo-label", "--threshold", "1"],
     "--threshold must be in (0, 1) (got 1.0)"),
    ("threshold zero", lambda w: w.base + ["--algorithm", "pseudo-label", "--threshold", "0"],
     "--threshold must be in (0, 1) (got 0.0)"),
    ("uratio zero", lambda w: w.base + ["--algorithm", "fixmatch", "--uratio", "0"],
     "--uratio must be at least 1 (got 0)"),
    ("confidence above one", lambda w: w.base + ["--algorithm", "uda", "--confidence", "1.5"],
     "--confidence must be in (0, 1] (got 1.5)"),
    ("strong augmentation", lambda w: w.base + ["--algorithm", "fixmatch", "--strong-aug", "autoaugment"],
     "argument --strong-aug: invalid choice"),
    ("tsa schedule", lambda w: w.base + ["--algorithm", "uda", "--tsa", "cosine"], "argument --tsa: invalid choice"),
    ("fixmatch flag to mixmatch", lambda w: w.base + ["--uratio", "3"],
     "--uratio is an option of adamatch, dash, fixmatch, flexmatch, freematch, softmatch, uda, not of mixmatch"),
    ("fairness flag to flexmatch", lambda w: w.base + ["--algorithm", "flexmatch", "--lambda-fair", "0.1"],
     "--lambda-fair is an option of freematch, not of flexmatch"),
    ("flexmatch threshold zero", lambda w: w.base + ["--algorithm", "flexmatch", "--confidence", "0"],
     "--confidence must be in (0, 1] (got 0.0)"),
    ("momentum one", lambda w: w.base + ["--algorithm", "freematch", "--ema-p", "1"],
     "--ema-p must be in [0, 1) (got 1.0)"),
    ("negative fairness weight", lambda w: w.base + ["--algorithm", "freematch", "--lambda-fair", "-0.1"],
     "--lambda-fair must be non-negative (got -0.1)"),
    ("n-sigma zero", lambda w: w.base + ["--algorithm", "softmatch", "--n-sigma", "0"],
     "--n-sigma must be positive (got 0.0)"),
    ("dash temperature zero", lambda w: w.base + ["--algorithm", "dash", "--T", "0", "--dash-warmup", "1"],
     "--T must be positive (got 0.0)"),
    ("dash gamma one", lambda w: w.base + ["--algorithm", "dash", "--dash-gamma", "1", "--dash-warmup", "1"],
     "--dash-gamma must be above 1 (ρ decays) (got 1.0)"),
    ("dash warm-up longer than the run", lambda w: w.base + ["--algorithm", "dash", "--dash-warmup", "5"],
     "--dash-warmup 5 is the whole run (--steps 2)"),
    ("curriculum of another unlabeled set",
     lambda w: w.flex + ["--out", _run_folder(w, "run-flex", w.flex, w.files["flexmatch_other_set"])],
     "does not fit this run (flexmatch's curriculum marks 10 unlabeled images, this run's unlabeled set holds"),
    ("every label without unlabeled images", lambda w: w.base + ["--n-labeled", "0"],
     "mixmatch trains on unlabeled images, and this split leaves none"),
    ("negative labels", lambda w: w.base + ["--n-labeled", "-10"],
     "--n-labeled must be 0 (every label) or positive (got -10)"),
    ("negative eps", lambda w: w.base + ["--algorithm", "vat", "--vat-eps", "-1"],
     "--vat-eps must be non-negative (got -1.0)"),
    ("negative weight", lambda w: w.base + ["--algorithm", "pi-model", "--lambda-u", "-2"],
     "--lambda-u must be non-negative (got -2.0)"),
    ("negative entropy weight", lambda w: w.base + ["--algorithm", "vat", "--lambda-ent", "-0.1"],
     "--lambda-ent must be non-negative (got -0.1)"),
    ("mean teacher without EMA", lambda w: w.base + ["--algorithm", "mean-teacher", "--ema-decay", "0"],
     "mean-teacher's teacher is the EMA model: --ema-decay 0"),
    ("ict without EMA", lambda w: w.base + ["--algorithm", "ict", "--ema-decay", "0"],
     "ict's teacher is the EMA model: --ema-decay 0"),
    ("nesterov with adam", lambda w: w.base + ["--nesterov"], "--nesterov needs --optimizer sgd"),
    ("milestones", lambda w: w.base + ["--lr-schedule", "step", "--lr-milestones", "0.75,0.5"],
     "--lr-milestones must be increasing shares of --steps in (0, 1)"),
    ("out is a file", lambda w: w.base + ["--out", os.path.join(w.root, "a-file")], "exists and is not a folder"),
    ("resume other classes",
     lambda w: w.base + ["--out", _run_folder(w, "run-c", w.base, w.files["other_classes"])],
     "holds a wrn-10-tiny model for 100 classes"),
    ("resume payload", lambda w: w.base + ["--out", _run_folder(w, "run-p", w.base, w.files["payload"])],
     "refused: it holds pickled Python objects other than tensors"),
    ("init other model", lambda w: w.base + ["--init", w.files["other_model"]], "holds a wrn-28-2 model, not --model"),
    ("init not checkpoint", lambda w: w.base + ["--init", w.files["not_checkpoint"]],
     "not a readable semisup checkpoint"),
    ("init missing", lambda w: w.base + ["--init", os.path.join(w.root, "gone.pt")], "no such checkpoint file"),
    ("unknown model", lambda w: w.base + ["--model", "wrn-99"], "--model must be one of"),
    ("vgg depth", lambda w: w.base + ["--model", "vgg17"], "there is no VGG of depth 17"),
    ("init prune without init", lambda w: w.base + ["--init-prune", "slim"],
     "--init-prune slim prunes the --init checkpoint; pass --init"),
    ("init ratio", lambda w: w.base + ["--init", w.files["other_model"], "--init-prune", "magnitude",
                                       "--init-ratio", "1.5"], "--init-ratio must be in [0, 1) (got 1.5)"),
    ("unknown dataset", lambda w: w.base + ["--dataset", "mnist"], "--dataset must be one of cifar10, cifar100"),
    ("image size not folder", lambda w: w.base + ["--image-size", "64"], "--image-size is for folder:PATH datasets"),
    ("image size too small", lambda w: _folder(w, "too few") + ["--image-size", "4"], "or at least 8 (got 4)"),
    ("folder download", lambda w: _folder(w, "too few") + ["--download"], "a folder:PATH dataset is read from"),
    ("folder missing", lambda w: TINY + ["--dataset", f"folder:{w.root}/no-images"], "no such folder"),
    ("folder one class", lambda w: _folder(w, "one class"),
     "train needs at least two class folders, found 1: cat"),
    ("folder test class", lambda w: _folder(w, "test class"), "test/wolf is a class that"),
    ("folder unreadable", lambda w: _folder(w, "unreadable"), "cannot read image"),
    ("folder too few", lambda w: _folder(w, "too few", "9"),
     "class dog has 2 training images: too few for 3 labeled and 0 validation images per class"),
    ("folder classes multiple", lambda w: _folder(w, "too few", "10"),
     "--n-labeled (10) and --n-valid (0) must be multiples of the number of classes (3)"),
]


def _with_out(w, name, args):
    return args if "--out" in args else args + ["--out", os.path.join(w.root, f"out-{name.replace(' ', '-')}")]


def _snapshot(path):
    if not os.path.exists(path):
        return None
    if os.path.isfile(path):
        return os.stat(path).st_mtime_ns
    return sorted((name, os.stat(os.path.join(path, name)).st_mtime_ns, os.stat(os.path.join(path, name)).st_size)
                  for name in os.listdir(path))


@pytest.fixture(scope="module")
def workspace(fake_cifar, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad"))
    return _workspace(root, fake_cifar, os.path.join(root, "payload-ran"))


@pytest.fixture(scope="module")
def cli_outcome(workspace):
    """Every CLI case run once, two at a time: name -> (completed process, --out before, --out after)."""
    commands = [(name, _with_out(workspace, name, flags(workspace))) for name, flags, _ in CLI_CASES]

    def run(command):
        name, args = command
        out = args[args.index("--out") + 1]
        before = _snapshot(out)
        proc = subprocess.run([sys.executable, TRAIN, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        return name, (proc.returncode, proc.stderr, before, _snapshot(out))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, commands))


def _assert_refused(returncode, stderr, before, after, fragment, marker):
    lines = stderr.strip().splitlines()
    assert returncode == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("train.py: error: "), stderr
    assert fragment in lines[0]
    assert before == after  # no folder created, nothing in an existing one touched
    assert not os.path.exists(marker)  # no pickled payload ever ran


@pytest.mark.parametrize("name,fragment", [(n, f) for n, _, f in CLI_CASES], ids=[n for n, _, _ in CLI_CASES])
def test_bad_input_on_the_command_line(cli_outcome, workspace, name, fragment):
    _assert_refused(*cli_outcome[name], fragment, workspace.marker)


@pytest.fixture(scope="module")
def in_process_outcome(workspace):
    """Every in-process case run once: name -> (exit code, stderr, --out before, --out after)."""
    results = {}
    for name, flags, _ in IN_PROCESS_CASES:
        args = _with_out(workspace, name, flags(workspace))
        out = args[args.index("--out") + 1]
        before, stderr = _snapshot(out), io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                returncode = runner.main(args)
            except SystemExit as exit_:  # refused by the command line itself (parse_args), as train.py exits
                returncode = exit_.code
        results[name] = (returncode, stderr.getvalue(), before, _snapshot(out))
    return results


@pytest.mark.parametrize("name,fragment", [(n, f) for n, _, f in IN_PROCESS_CASES],
                         ids=[n for n, _, _ in IN_PROCESS_CASES])
def test_bad_input_in_process(in_process_outcome, workspace, name, fragment):
    _assert_refused(*in_process_outcome[name], fragment, workspace.marker)


def test_refused_folders_get_no_cache(in_process_outcome, workspace):
    """A refused folder dataset is left as it was: its decoded images are not cached either."""
    assert all(in_process_outcome[f"folder {name}"][0] == 2 for name in ("one class", "unreadable", "too few"))
    for folder in workspace.folders.values():
        assert not os.path.exists(os.path.join(folder, ".semisup-cache"))


def readme_messages():
    """The messages listed in docs/troubleshooting.md, as regular expressions (``<...>`` matches anything)."""
    with open(os.path.join(ROOT, "docs", "troubleshooting.md")) as f:
        text = f.read()
    section = text[text.index("\n## Error messages"):]
    listed = [re.sub(r"\s+", " ", m) for m in re.findall(r"^- `([^`]+)`", section, flags=re.M)]
    return [re.compile(re.sub(r"<[^<>]+>", ".+", re.escape(m))) for m in listed]


def test_readme_troubleshooting_lists_every_message(cli_outcome, in_process_outcome):
    printed = [stderr.strip() for _, stderr, _, _ in [*cli_outcome.values(), *in_process_outcome.values()]]
    patterns = readme_messages()
    unlisted = [line for line in printed
                if not any(p.fullmatch(line.removeprefix("train.py: error: ")) for p in patterns)]
    assert not unlisted


def test_force_new_moves_the_old_run_aside(fake_cifar, tmp_path):
    out = str(tmp_path / "run")
    args = TINY + ["--data-dir", fake_cifar, "--steps", "1", "--eval-every", "1", "--out", out]
    assert runner.main(args) == 0
    assert runner.main(args + ["--lr", "0.001", "--force-new"]) == 0
    aside = [name for name in os.listdir(tmp_path) if re.fullmatch(r"run\.old-\d{8}-\d{6}", name)]
    assert len(aside) == 1 and os.path.isfile(tmp_path / aside[0] / "last.pt")
    with open(tmp_path / aside[0] / "config.json") as f, open(tmp_path / "run" / "config.json") as g:
        assert (json.load(f)["lr"], json.load(g)["lr"]) == (0.002, 0.001)
