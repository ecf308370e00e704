"""The strict command line: every field has a documented flag, the paper's defaults, and bad input is refused
with one line on stderr and exit code 2 before anything is written."""
import os
import subprocess
import sys
from dataclasses import fields

import pytest

from semisup.config import Config, ConfigError, build_parser, parse_args, validate

from conftest import ROOT, TINY

TRAIN = os.path.join(ROOT, "train.py")


def _flag(f):
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _run_train(args, cwd):
    return subprocess.run([sys.executable, TRAIN, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_documents_every_field():
    """`train.py --help` lists a flag for every Config field, with that field's help text."""
    result = _run_train(["--help"], ROOT)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps help lines
    for f in fields(Config):
        assert _flag(f) in text, f"{f.name} has no flag in --help"
        # argparse wraps lines, also after hyphens ("batch-" / "norm"): compare with all whitespace removed
        assert "".join(f.metadata["help"].split()) in "".join(text.split()), f"{f.name}'s help is not in --help"
    assert "--no-progress" in text and "--no-download" in text  # booleans can be switched both ways


def test_defaults_are_the_papers():
    cfg = parse_args([])
    assert (cfg.K, cfg.T, cfg.alpha, cfg.lambda_u, cfg.rampup_kimg, cfg.rampup_steps) == (2, 0.5, 0.75, 75.0, 1024, 0)
    assert cfg.rampup_images == 16384 * 64  # the official warmup_kimg = 1024: 16,384 steps of 64 labeled images
    assert (cfg.lr, cfg.wd, cfg.ema_decay, cfg.batch_size) == (0.002, 0.02, 0.999, 64)
    assert (cfg.n_labeled, cfg.n_valid, cfg.steps, cfg.eval_every, cfg.n_eval_last) == (250, 5000, 2 ** 20, 1024, 20)
    assert (cfg.algorithm, cfg.mixup, cfg.model, cfg.data_dir) == ("mixmatch", "all", "wrn-28-2", "data")
    assert cfg.run_dir == "runs/cifar10@250"
    assert parse_args(["--algorithm", "supervised", "--n-labeled", "4000"]).run_dir == "runs/cifar10@4000-supervised"


def test_flags_set_fields_with_their_types():
    cfg = parse_args(["--K", "3", "--T", "0.25", "--lambda-u", "100", "--rampup-steps", "2048", "--no-progress",
                      "--ema-guess", "--mixup", "separate", "--seed", "7"])
    assert (cfg.K, cfg.T, cfg.lambda_u, cfg.rampup_steps, cfg.seed) == (3, 0.25, 100.0, 2048, 7)
    assert isinstance(cfg.K, int) and isinstance(cfg.T, float)
    assert (cfg.progress, cfg.ema_guess, cfg.mixup) == (False, True, "separate")
    assert parse_args(["--no-sharpen"]).temperature == 1.0
    assert parse_args(["--T", "0.3"]).temperature == 0.3


@pytest.mark.parametrize("argv, words", [
    (["--bogus", "1"], "unrecognized arguments: --bogus"),
    (["--n-lab", "250"], "unrecognized arguments: --n-lab"),  # no abbreviations: a typo is not a guess
    (["--K", "two"], "invalid int value: 'two'"),
    (["--T", "warm"], "invalid float value: 'warm'"),
    (["--algorithm", "fixmatch"], "invalid choice: 'fixmatch'"),
    (["--T", "0"], "--T must be positive (got 0.0)"),
    (["--T", "-0.5"], "--T must be positive (got -0.5)"),
    (["--K", "0"], "--K must be at least 1 (got 0)"),
    (["--alpha", "0"], "--alpha must be positive (got 0.0)"),
    (["--n-labeled", "255"], "--n-labeled must be a multiple of the 10 classes (got 255)"),
    (["--n-valid", "5005"], "--n-valid must be a multiple of the 10 classes (got 5005)"),
    (["--ema-decay", "1"], "--ema-decay must be in [0, 1) (got 1.0)"),
    (["--batch-size", "64", "--accum-steps", "3"], "--accum-steps 3 does not divide --batch-size 64"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, prog="train.py")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("train.py: error: ")
    assert words in err


def test_round_trip_through_dict_and_unknown_keys():
    cfg = parse_args(["--K", "3", "--out", "somewhere"])
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown configuration keys: colour"):
        Config.from_dict({**cfg.to_dict(), "colour": "red"})
    with pytest.raises(ConfigError, match="--T must be positive"):
        Config.from_dict({**cfg.to_dict(), "T": 0.0})


def test_every_field_reaches_the_parser():
    dests = {a.dest for a in build_parser()._actions}
    assert {f.name for f in fields(Config)} <= dests
    assert validate(Config()) == Config()


@pytest.mark.parametrize("argv, words", [
    (["--T", "0"], "--T must be positive"),
    (["--K", "0"], "--K must be at least 1"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--n-labeled", "1000"], "must be smaller than the 600 training images"),  # known only from the data
])
def test_train_py_refuses_before_writing(argv, words, fake_cifar, tmp_path):
    """A refused run prints one line, exits with 2, and leaves no run folder behind."""
    out = tmp_path / "run"
    result = _run_train([*TINY, "--data-dir", fake_cifar, "--out", str(out), "--steps", "2", *argv], tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("train.py: error: ")
    assert words in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not out.exists()


def test_train_py_missing_data_names_folder_and_both_fixes(tmp_path):
    out, data = tmp_path / "run", tmp_path / "nodata"
    result = _run_train([*TINY, "--data-dir", str(data), "--out", str(out)], tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert str(data) in result.stderr and "--download" in result.stderr and "cifar-10-batches-py" in result.stderr
    assert not out.exists() and not data.exists()
