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
    (["--algorithm", "noisy-student"], "invalid choice: 'noisy-student'"),
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


# ----- the algorithms' own options ----------------------------------------------------------------------------
def test_each_algorithm_resolves_its_own_defaults():
    from semisup import algorithms

    for name, spec in algorithms.SPECS.items():
        cfg = parse_args(["--algorithm", name])
        for option, (default, _, _) in spec.options.items():
            assert getattr(cfg, option) == default, (name, option)
        foreign = [o for o in algorithms.all_options() if o not in spec.options]
        assert all(getattr(cfg, o) is None for o in foreign), name  # recorded as unset in config.json
    assert [parse_args(["--algorithm", a]).lambda_u for a in ("mixmatch", "pi-model", "pseudo-label", "vat",
                                                               "mean-teacher", "ict")] == [75, 10, 1, 0.3, 50, 50]
    assert parse_args(["--algorithm", "fs-mixup"]).wd == 0.002 and parse_args(["--algorithm", "vat"]).wd == 0.02
    assert parse_args(["--algorithm", "fs-mixup", "--wd", "0.02"]).wd == 0.02


def test_help_lists_each_option_with_its_algorithms_and_defaults():
    parser = build_parser()
    helps = {flag: action.help for flag, action in parser._option_string_actions.items()}
    assert helps["--threshold"] == "confidence above which a pseudo-label counts (strict >) [pseudo-label 0.95]"
    assert helps["--lambda-u"].endswith("[mixmatch 75, adamatch 1, dash 1, fixmatch 1, flexmatch 1, freematch 1, "
                                        "ict 50, mean-teacher 50, pi-model 10, pseudo-label 1, softmatch 1, uda 1, "
                                        "vat 0.3]")
    assert helps["--lambda-fair"].endswith("[freematch 0.01]")
    assert helps["--softmatch-variant"].endswith("[softmatch torchssl]")
    assert helps["--w-rot"] == "weight of the rotation loss (constant) [remixmatch 0.5]"
    assert "options of the algorithms" in parser.format_help()


def test_recipe_help_names_every_algorithm_with_its_own_recipe():
    """The optimizer, lr, schedule, Nesterov and weight-decay help is made from the algorithms' DEFAULTS: every
    algorithm that declares another value is named with it, and one that declares none is not named."""
    import re

    from semisup import algorithm_specs
    from semisup.config import RECIPE

    helps = {f.name: " ".join(f.metadata["help"].split()) for f in fields(Config)}
    sgd = "adamatch, dash, fixmatch, flexmatch, freematch, remixmatch, softmatch, uda"
    assert f"adam; sgd for {sgd}" in helps["optimizer"]
    assert f"0.002; 0.03 for {sgd}" in helps["lr"]
    for key, default in RECIPE.items():
        defaults = helps[key].split("the algorithm's: ")[1]
        for name, spec in algorithm_specs.SPECS.items():
            own = key in spec.defaults and spec.defaults[key] != default
            named = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", defaults) is not None
            assert named == own, (key, name, defaults)


def test_the_baselines_ramp_over_a_share_of_the_run_mixmatch_in_kimg():
    vat = parse_args(["--algorithm", "vat", "--steps", "1000", "--batch-size", "64"])
    assert vat.rampup_images == 0.4 * 1000 * 64  # warmup_pos 0.4 of the run's images
    assert parse_args(["--algorithm", "vat", "--rampup-kimg", "2"]).rampup_images == 2048  # kimg replaces the share
    assert parse_args([]).rampup_images == 1024 * 1024  # MixMatch: 1024 kimg whatever the run's length
    assert parse_args(["--algorithm", "supervised"]).rampup_images == 0


def test_registry_reads_declarations_without_importing_torch():
    code = ("import sys; import semisup.config, semisup.algorithms as a; print(len(a.NAMES), 'torch' in sys.modules, "
            "sorted(a.SPECS['vat'].options)[:2])")  # train.py --help builds its parser without torch
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.split() == ["17", "False", "['lambda_ent',", "'lambda_u']"], out.stderr


def test_old_configurations_load_without_the_options_their_algorithm_never_used():
    """config.json of runs saved before the options belonged to their algorithms held MixMatch's values for
    every algorithm; they load (and resume) as the same experiment."""
    from semisup.config import config_differences

    old = {**Config(algorithm="supervised").to_dict(), "K": 2, "T": 0.5, "lambda_u": 75.0, "mixup": "all"}
    assert Config.from_dict(old).K is None
    assert config_differences(old, Config(algorithm="supervised").to_dict()) == []


# ----- optimizer and schedule ----------------------------------------------------------------------------------
def _rates(*flags, steps=8):
    import torch

    from semisup.optim import current_lr, make_optimizer, make_scheduler

    cfg = parse_args(["--steps", str(steps), *flags])
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    scheduler = make_scheduler(optimizer, cfg)
    rates = []
    for _ in range(steps):
        rates.append(current_lr(optimizer))
        optimizer.step()
        scheduler.step()
    return optimizer, rates


def test_schedules():
    import math

    _, constant = _rates()
    assert constant == [0.002] * 8  # the official constant rate, bit for bit
    opt, step = _rates("--optimizer", "sgd", "--lr", "0.1", "--lr-schedule", "step", "--nesterov")
    assert step == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)  # /10 at 50 % and 75 % (network slimming)
    assert isinstance(opt, __import__("torch").optim.SGD) and opt.defaults["nesterov"]
    _, cosine = _rates("--lr", "1", "--lr-schedule", "cosine")
    assert cosine == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)])


def test_l2_weight_decay_is_the_optimizers_and_decoupled_is_not():
    opt, _ = _rates("--optimizer", "sgd", "--wd-mode", "l2", "--wd", "1e-4")
    assert opt.param_groups[0]["weight_decay"] == 1e-4
    opt, _ = _rates()
    assert opt.param_groups[0]["weight_decay"] == 0.0  # the Trainer shrinks the kernels after the step instead


def test_like_takes_another_algorithms_recipe_and_named_options(tmp_path):
    """``LIKE = (name, options)``: that file's DEFAULTS and the named OPTIONS as declared there; the file's own win,
    and an option it does not name is not taken (FreeMatch has no --confidence)."""
    from semisup import algorithm_specs

    (tmp_path / "base.py").write_text('NAME = "base"\nCLASS = "B"\nOPTIONS = {"a": (1, "help a"), "b": (2, "help b")}\n'
                                      'DEFAULTS = {"lr": 0.03, "wd": 5e-4}\n')
    (tmp_path / "child.py").write_text('NAME = "child"\nCLASS = "C"\nLIKE = ("base", ("a",))\n'
                                       'OPTIONS = {"c": (3, "help c")}\nDEFAULTS = {"wd": 1e-3}\n')
    child = algorithm_specs.discover(str(tmp_path))["child"]
    assert child.options == {"a": (1, "help a", ()), "c": (3, "help c", ())}
    assert child.defaults == {"lr": 0.03, "wd": 1e-3}
    specs = algorithm_specs.SPECS
    assert specs["flexmatch"].options["strong_aug"] == specs["fixmatch"].options["strong_aug"]
    assert "confidence" not in specs["freematch"].options and specs["freematch"].defaults == specs["fixmatch"].defaults
