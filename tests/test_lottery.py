"""Lottery tickets with rewinding: the masks' math, the rewound states, the controls, resumption and the report.

One tiny lottery (WRN-10-tiny, 4 steps, rewind to step 2, two rounds with both controls) is trained once for the
module, interrupted once and extended once on the way; the tests read its folder.
"""
import json
import os
import shutil
import signal

import pytest
import torch

from semisup import stop
from semisup.checkpoint import FORMAT, VERSION, atomic_save, load_checkpoint, step_path
from semisup.commands.compress import main as compress
from semisup.commands.lottery import main
from semisup.compress import lottery as lt
from semisup.config import Config, ConfigError, parse_args, validate
from semisup.data import prepare_from_config
from semisup.engine import Trainer
from semisup.experiments import lottery as lottery_run
from semisup.experiments import lottery_report as report
from semisup.masks import effective_weight, prunable_modules
from semisup.models import create_model
from semisup.records import read_json
from semisup.runner import train
from semisup.runtime import make_runtime

from conftest import TINY
from test_bad_input import readme_messages

STEPS, K, P = 4, 2, 0.5
PREFIX = "python -m semisup.compress lottery: error: "


def train_flags(data_dir, *extra):
    return ["--", *TINY, "--data-dir", data_dir, "--steps", str(STEPS), "--eval-every", "2", *extra]


def lottery_argv(out, data_dir, rounds, *own, extra=()):
    return ["--out", out, "--rounds", str(rounds), "--prune-fraction", str(P), "--rewind-step", str(K), *own,
            *train_flags(data_dir, *extra)]


def call(argv) -> int:
    """main's exit code, whether it returns it or argparse raises it."""
    try:
        return main(argv)
    except SystemExit as err:
        return err.code


def files_of(folder):
    """{path: (size, mtime)} of every file under ``folder``: what a skipped run must leave untouched."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            out[path] = (os.path.getsize(path), os.stat(path).st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def lottery(fake_cifar, tmp_path_factory):
    """Interrupted in round 0, rerun with one round, then extended to two; what each step left behind."""
    out = str(tmp_path_factory.mktemp("lottery") / "lt")
    stop.install()
    os.kill(os.getpid(), signal.SIGUSR1)  # as a scheduler would: round 0 stops after its first step
    try:
        stopped = call(lottery_argv(out, fake_cifar, 1))
        stopped_at = load_checkpoint(os.path.join(out, "round0", "last.pt"))["step"]
    finally:
        stop.reset()
    assert call(lottery_argv(out, fake_cifar, 1)) == 0
    after_one = {name: files_of(os.path.join(out, name)) for name in ("round0", "round1", "reinit1", "random1")}
    assert call(lottery_argv(out, fake_cifar, 2)) == 0
    return {"out": out, "stopped": stopped, "stopped_at": stopped_at, "after_one": after_one}


def final(out, name):
    return load_checkpoint(os.path.join(out, name, "last.pt"))


def start(out, name):
    """The checkpoint a round started from: rotated to last-1.pt by its only save, at --steps."""
    state = load_checkpoint(os.path.join(out, name, "last-1.pt"))
    assert state["step"] == K
    return state


def same(a, b) -> bool:
    """Deep equality of checkpoint parts: tensors exactly, containers element by element."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# ----- the math -----------------------------------------------------------------------------------------------
def random_layers(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(6, 4, 3, 3, generator=g), "b.weight": 3 * torch.randn(10, 8, generator=g)}


def test_next_masks_prune_the_smallest_survivors_globally():
    weights = random_layers()
    masks = {k: torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) > 0.3 for k, w in weights.items()}
    new = lt.next_masks(weights, masks, 0.2, "global")
    alive = sum(int(m.sum()) for m in masks.values())
    assert sum(int(m.sum()) for m in new.values()) == alive - round(0.2 * alive)
    for k in masks:
        assert not (new[k] & ~masks[k]).any()  # pruned weights stay pruned
    removed = torch.cat([weights[k].abs()[masks[k] & ~new[k]] for k in masks])
    kept = torch.cat([weights[k].abs()[new[k]] for k in masks])
    assert removed.max() <= kept.min()


def test_next_masks_local_takes_the_fraction_from_each_layer():
    weights = random_layers()
    masks = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    new = lt.next_masks(weights, masks, 0.25, "local")
    for k, w in weights.items():
        assert int((~new[k]).sum()) == round(0.25 * w.numel())
        assert w.abs()[~new[k]].max() <= w.abs()[new[k]].min()


def test_sparsity_per_round_is_one_minus_survival_to_the_r():
    weights = random_layers()
    masks = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    total = sum(w.numel() for w in weights.values())
    for r in range(1, 6):
        masks = lt.next_masks(weights, masks, 0.2)
        assert lt.sparsity_of(masks) == pytest.approx(lt.expected_sparsity(0.2, r), abs=r / total)


def test_random_masks_keep_each_layers_count_and_differ():
    weights = random_layers()
    masks = lt.next_masks(weights, {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}, 0.5)
    drawn = lt.random_masks_like(masks, lt.random_mask_generator(1, 1))
    again = lt.random_masks_like(masks, lt.random_mask_generator(1, 1))
    for k in masks:
        assert int(drawn[k].sum()) == int(masks[k].sum())
        assert torch.equal(drawn[k], again[k])  # a seeded draw
    assert any(not torch.equal(drawn[k], masks[k]) for k in masks)


# ----- one lottery, end to end --------------------------------------------------------------------------------
def test_round0_keeps_the_full_state_at_the_rewind_step(lottery):
    state = load_checkpoint(step_path(os.path.join(lottery["out"], "round0"), K))
    assert state["step"] == K
    assert {"model", "ema", "optimizer", "scheduler", "algorithm", "rng", "samplers"} <= state.keys()
    assert read_json(os.path.join(lottery["out"], "round0", "config.json"))["keep_step"] == K


def test_rewinding_restores_the_step_k_survivors_and_the_optimizer(lottery):
    out = lottery["out"]
    step_k, begin = load_checkpoint(step_path(os.path.join(out, "round0"), K)), start(out, "round1")
    masks = begin["masks"]
    assert masks and lt.sparsity_of(masks) > 0
    for part in ("model", "ema"):
        for key, value in step_k[part].items():
            expected = value * masks[key] if key in masks else value
            assert torch.equal(begin[part][key], expected), (part, key)
    for part in ("optimizer", "scheduler", "algorithm", "rng", "samplers", "step"):
        assert same(begin[part], step_k[part]), part
    # loaded as train.py loads it: the trainer stands exactly where round 0 stood at step K
    cfg = Config.from_dict(read_json(os.path.join(out, "round1", "config.json")))
    data = prepare_from_config(cfg)
    trainer = Trainer(cfg, make_runtime(cfg), data, create_model(cfg.model, data.num_classes))
    trainer.load_state_dict(begin)
    assert trainer.step == K
    assert same(trainer.optimizer.state_dict(), step_k["optimizer"])
    ema = trainer.ema.model.state_dict()
    for key, value in step_k["ema"].items():
        got = ema[key + "_orig"] * ema[key + "_mask"] if key in masks else ema[key]
        assert torch.equal(got, value * masks[key] if key in masks else value), key


def trainer_at(out, name):
    """A Trainer built as train.py builds it for run ``name``, loaded with the checkpoint the run started from."""
    cfg = Config.from_dict(read_json(os.path.join(out, name, "config.json")))
    data = prepare_from_config(cfg)
    trainer = Trainer(cfg, make_runtime(cfg), data, create_model(cfg.model, data.num_classes))
    trainer.load_state_dict(start(out, name))
    return trainer


def test_pruned_weights_stay_zero_through_training(lottery):
    """Trained from a round's start as train.py trains it, the weights the forward pass uses are zero wherever the
    masks prune, in the raw and the EMA model, while the survivors train; and they are the weights the round's
    run saved."""
    out = lottery["out"]
    for name in ("round1", "round2", "reinit1", "random2"):
        trainer, begin, saved = trainer_at(out, name), start(out, name), final(out, name)
        masks = begin["masks"]
        while trainer.step < STEPS:
            trainer.train_step()
        changed = 0
        for model, part in ((trainer.model, "model"), (trainer.ema.model, "ema")):
            for layer, module in prunable_modules(model):
                key, weight = f"{layer}.weight", effective_weight(module)
                assert not weight[~masks[key]].any(), (name, part, key)
                assert torch.allclose(weight, saved[part][key], atol=1e-6), (name, part, key)
                changed += int((weight[masks[key]] != begin[part][key][masks[key]]).sum())
        assert changed > 0, name  # the survivors did train


def smallest_survivors_pruned(weights, masks, fraction):
    """The masks after pruning round(fraction · survivors) of the smallest surviving |w| over all layers, by hand:
    every survivor as (|w|, layer order, position) sorted in plain Python, ties to the weight that comes first."""
    survivors = sorted((abs(w), i, j) for i, key in enumerate(masks)
                       for j, (w, alive) in enumerate(zip(weights[key].flatten().tolist(),
                                                          masks[key].flatten().tolist())) if alive)
    expected = {key: masks[key].flatten().clone() for key in masks}
    keys = list(masks)
    for _, i, j in survivors[:round(fraction * len(survivors))]:
        expected[keys[i]][j] = False
    return {key: expected[key].view(masks[key].shape) for key in masks}


def test_next_masks_on_a_tiny_example():
    weights = {"a.weight": torch.tensor([[0.5, -0.1], [0.3, 2.0]]), "b.weight": torch.tensor([[-0.2, 0.05, -1.0]])}
    masks = {"a.weight": torch.tensor([[True, True], [True, True]]), "b.weight": torch.tensor([[True, False, True]])}
    # survivors by |w|: 0.1 (a), 0.2 (b), 0.3 (a), 0.5 (a), 1.0 (b), 2.0 (a); b's 0.05 is pruned already
    new = lt.next_masks(weights, masks, 0.5)  # round(0.5 · 6) = 3: 0.1, 0.2 and 0.3 go
    assert new["a.weight"].tolist() == [[True, False], [False, True]]
    assert new["b.weight"].tolist() == [[False, False, True]]
    local = lt.next_masks(weights, masks, 0.75, "local")  # a: 3 of 4 (0.1, 0.3, 0.5); b: both survivors
    assert local["a.weight"].tolist() == [[False, False], [False, True]]
    assert local["b.weight"].tolist() == [[False, False, False]]
    assert sum(int(m.sum()) for m in lt.next_masks(weights, masks, 0.75).values()) == 2  # global: 4 of 6 go


def test_each_round_prunes_the_smallest_of_the_previous_rounds_final_weights(lottery):
    out = lottery["out"]
    previous = final(out, "round0")
    masks = {k: torch.ones_like(previous["model"][k], dtype=torch.bool)
             for k in lt.prunable_keys(previous["model_name"], previous["arch"])}
    assert "masks" not in previous  # round 0 is dense
    for r in (1, 2):
        expected = smallest_survivors_pruned(previous["model"], masks, P)
        masks = final(out, f"round{r}")["masks"]
        assert same(masks, expected), r
        previous = final(out, f"round{r}")


def test_sparsity_per_round_in_the_report(lottery):
    rows = read_json(os.path.join(lottery["out"], "lottery.json"))["rounds"]
    total = sum(m.numel() for m in final(lottery["out"], "round1")["masks"].values())
    assert [row["round"] for row in rows] == [0, 1, 2]
    for row in rows:
        assert row["sparsity"] == pytest.approx(1 - (1 - P) ** row["round"], abs=row["round"] / total)
        assert row["expected_sparsity"] == pytest.approx(1 - (1 - P) ** row["round"])


def test_reinit_control_has_the_tickets_masks_on_another_initialisation(lottery):
    out = lottery["out"]
    ticket, reinit = start(out, "round1"), start(out, "reinit1")
    step_k = load_checkpoint(step_path(os.path.join(out, "round0"), K))
    assert same(reinit["masks"], ticket["masks"])
    fresh = lt.fresh_weights(step_k["model_name"], step_k["arch"], lt.reinit_seed(1, 1))
    for key, mask in ticket["masks"].items():
        assert torch.equal(reinit["model"][key], fresh[key] * mask), key
        assert not torch.equal(reinit["model"][key], ticket["model"][key]), key
    assert same(reinit["optimizer"], step_k["optimizer"]) and same(reinit["rng"], step_k["rng"])


def test_random_control_has_other_masks_with_the_same_per_layer_sparsity(lottery):
    out = lottery["out"]
    ticket, rand = start(out, "round1"), start(out, "random1")
    step_k = load_checkpoint(step_path(os.path.join(out, "round0"), K))
    assert ticket["masks"].keys() == rand["masks"].keys()
    for key, mask in ticket["masks"].items():
        assert int(rand["masks"][key].sum()) == int(mask.sum()), key
        assert torch.equal(rand["model"][key], step_k["model"][key] * rand["masks"][key]), key
    assert any(not torch.equal(rand["masks"][k], m) for k, m in ticket["masks"].items())


def test_a_stopped_lottery_resumes_the_unfinished_run(lottery):
    assert lottery["stopped"] == stop.REQUEUE_EXIT
    assert lottery["stopped_at"] == 1
    assert read_json(os.path.join(lottery["out"], "round0", "summary.json"))["step"] == STEPS
    with open(os.path.join(lottery["out"], "round0", "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [2, 4]  # each evaluation once: resumed, not restarted


def test_a_rerun_never_redoes_a_finished_round(lottery):
    for name, files in lottery["after_one"].items():
        assert files_of(os.path.join(lottery["out"], name)) == files, name


def test_the_report_holds_every_run(lottery, capsys):
    out = lottery["out"]
    record = read_json(os.path.join(out, "lottery.json"))
    assert record["settings"]["prune_fraction"] == P and record["settings"]["rewind_step"] == K
    assert record["rounds"][0]["ticket"] is not None and record["rounds"][0]["reinit"] is None
    for row in record["rounds"][1:]:
        assert all(isinstance(row[kind], float) for kind in report.KINDS), row
        assert row["folders"] == {"ticket": f"round{row['round']}", "reinit": f"reinit{row['round']}",
                                  "random": f"random{row['round']}"}
    with open(os.path.join(out, "lottery.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "lottery.txt")) as f:
        assert len(f.read().splitlines()) == 3 + 3


def test_the_report_renders_partial_results(tmp_path):
    settings = {"rounds": 3, "prune_fraction": 0.2, "rewind_step": 0, "scope": "global",
                "config": {"model": "wrn-28-2", "algorithm": "mixmatch", "dataset": "cifar10", "n_labeled": 250,
                           "steps": 100}}
    rows = [{"round": 0, "sparsity": 0.0, "expected_sparsity": 0.0, "ticket": 50.0, "reinit": None, "random": None},
            {"round": 1, "sparsity": 0.2, "expected_sparsity": 0.2, "ticket": 51.0, "reinit": 40.0, "random": None},
            {"round": 2, "sparsity": None, "expected_sparsity": 0.36, "ticket": None, "reinit": None, "random": None}]
    report.write({"settings": settings, "rounds": rows}, str(tmp_path))
    assert os.path.getsize(tmp_path / "lottery.png") > 1000
    text = (tmp_path / "lottery.txt").read_text()
    assert "36.00%" in text and text.splitlines()[-1].split()[-3:] == ["-", "-", "-"]


def test_other_algorithms_and_no_controls(fake_cifar, tmp_path):
    out = str(tmp_path / "sup")
    assert call(lottery_argv(out, fake_cifar, 1, "--no-controls", extra=("--algorithm", "supervised"))) == 0
    assert sorted(os.listdir(out)) == ["lottery.json", "lottery.png", "lottery.txt", "round0", "round1"]
    row = read_json(os.path.join(out, "lottery.json"))["rounds"][1]
    assert row["ticket"] is not None and row["reinit"] is None and row["random"] is None


def test_keep_step_zero_keeps_the_state_before_the_first_step(fake_cifar, tmp_path):
    out = str(tmp_path / "run")
    cfg = parse_args([*TINY, "--data-dir", fake_cifar, "--steps", "2", "--eval-every", "2", "--keep-step", "0",
                      "--out", out])
    train(cfg)
    state, last = load_checkpoint(step_path(out, 0)), load_checkpoint(os.path.join(out, "last.pt"))
    assert state["step"] == 0 and state["optimizer"]["state"] == {} and state["history"] == []
    assert last["step"] == 2 and not torch.equal(state["model"]["fc.weight"], last["model"]["fc.weight"])
    torch.manual_seed(cfg.seed)  # the initialisation, as train.py draws it
    init = create_model(cfg.model, 10).state_dict()
    assert all(torch.equal(state["model"][k], v) for k, v in init.items())


@pytest.mark.parametrize("keep", [-2, 5])
def test_keep_step_outside_the_run_is_refused(keep):
    with pytest.raises(ConfigError, match="--keep-step must be -1"):
        validate(Config(steps=4, keep_step=keep))


# ----- refused input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("own, extra, says", [
    (["--rounds", "0"], [], "--rounds must be at least 1"),
    (["--prune-fraction", "0"], [], "--prune-fraction must be in (0, 1)"),
    (["--prune-fraction", "1"], [], "--prune-fraction must be in (0, 1)"),
    (["--prune-fraction", "1.5"], [], "--prune-fraction must be in (0, 1)"),
    (["--rewind-step", "5"], [], "--rewind-step 5 is not before the run's --steps 4"),
    (["--rewind-step", "4"], [], "--rewind-step 4 is not before the run's --steps 4"),
    ([], ["--lr", "-1"], "--lr must be positive"),
    ([], ["--bogus"], "unrecognized arguments: --bogus"),
    ([], ["--out", "elsewhere"], "--out among the train.py flags"),
    ([], ["--prune-schedule", "oneshot"], "--prune-schedule among the train.py flags"),
    ([], ["--keep-step", "1"], "--keep-step among the train.py flags"),
    ([], ["--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
])
def test_bad_input_is_one_line_and_writes_nothing(fake_cifar, tmp_path, capsys, own, extra, says):
    out = str(tmp_path / "lt")
    argv = ["--out", out, "--rounds", "1", "--rewind-step", "1", *own, *train_flags(fake_cifar, *extra)]
    assert call(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(PREFIX) and says in err[0]
    assert any(p.fullmatch(err[0][len(PREFIX):]) for p in readme_messages()), f"not in troubleshooting.md: {err}"
    assert not os.path.exists(out)


def test_python_m_semisup_compress_lottery_is_this_command(fake_cifar, tmp_path, capsys):
    out = str(tmp_path / "lt")
    assert compress(["lottery", "--out", out, "--rounds", "0", *train_flags(fake_cifar)]) == 2
    assert capsys.readouterr().err.startswith(PREFIX + "--rounds must be at least 1")
    assert not os.path.exists(out)


def test_a_lottery_with_other_settings_is_refused(lottery, fake_cifar, capsys):
    before = files_of(lottery["out"])
    assert call(["--out", lottery["out"], "--rounds", "2", "--prune-fraction", "0.3", "--rewind-step", str(K),
                 *train_flags(fake_cifar)]) == 2
    assert "holds a lottery with other settings (prune_fraction: 0.5 -> 0.3)" in capsys.readouterr().err
    assert call(lottery_argv(lottery["out"], fake_cifar, 2, extra=("--lr", "0.001"))) == 2
    assert "lr: 0.002 -> 0.001" in capsys.readouterr().err
    init = os.path.join(lottery["out"], "round0", "last.pt")
    assert call(lottery_argv(lottery["out"], fake_cifar, 2, extra=("--init", init))) == 2
    assert f"holds a lottery with other settings (init: '' -> '{init}')" in capsys.readouterr().err
    assert files_of(lottery["out"]) == before


def init_checkpoint(tmp_path, model, classes):
    """A checkpoint of ``model`` for ``classes`` classes, to pass as --init."""
    torch.manual_seed(0)
    net = create_model(model, classes)
    path = str(tmp_path / f"{model}-{classes}.pt")
    atomic_save({"format": FORMAT, "version": VERSION, "model_name": model, "arch": dict(net.arch),
                 "model": net.state_dict(), "ema": net.state_dict(), "step": 0}, path)
    return path


@pytest.mark.parametrize("init, says", [
    (None, "--init: {init}: no such checkpoint file"),
    (("wrn-16-1", 10), "--init {init} holds a wrn-16-1 model, not --model wrn-10-tiny; pass --model wrn-16-1"),
    (("wrn-10-tiny", 100), "--init {init}: model has 100 classes, the data has 10"),
])
def test_a_bad_init_is_refused_before_anything_is_written(fake_cifar, tmp_path, capsys, init, says):
    path = str(tmp_path / "missing.pt") if init is None else init_checkpoint(tmp_path, *init)
    out = str(tmp_path / "lt")
    assert call(lottery_argv(out, fake_cifar, 1, extra=("--init", path))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [PREFIX + says.format(init=path)]
    assert any(p.fullmatch(err[0][len(PREFIX):]) for p in readme_messages()), f"not in troubleshooting.md: {err}"
    assert not os.path.exists(out)


def test_an_unknown_model_is_refused_before_anything_is_written(fake_cifar, tmp_path, capsys):
    out = str(tmp_path / "lt")
    assert call(lottery_argv(out, fake_cifar, 1, extra=("--model", "vgg7"))) == 2
    assert capsys.readouterr().err.startswith(PREFIX + "there is no VGG of depth 7")
    assert not os.path.exists(out)


def test_the_next_rounds_masks_need_the_previous_rounds_final_state(lottery, fake_cifar, tmp_path, capsys):
    """round1's last.pt damaged: its fallback, last-1.pt, is its rewound start at step K, not its final weights."""
    out = str(tmp_path / "lt")
    shutil.copytree(lottery["out"], out)
    for name in ("round2", "reinit2", "random2"):
        shutil.rmtree(os.path.join(out, name))
    with open(os.path.join(out, "round1", "last.pt"), "r+b") as f:
        f.write(b"damaged")
    assert call(lottery_argv(out, fake_cifar, 2)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    folder = os.path.join(out, "round1")
    assert err == [f"{PREFIX}{folder}: its newest readable checkpoint is at step {K}, not at --steps {STEPS}: round "
                   f"2's masks rank round1's final weights; restore its last.pt, or move {folder} aside to train it "
                   f"again"]
    assert any(p.fullmatch(err[0][len(PREFIX):]) for p in readme_messages()), f"not in troubleshooting.md: {err}"
    assert not os.path.exists(os.path.join(out, "round2"))


def test_a_torch_compile_failure_is_one_line(fake_cifar, tmp_path, capsys, monkeypatch):
    from torch._dynamo.exc import TorchDynamoException

    def fail(cfg):
        raise TorchDynamoException("backend compiler failed\nlong traceback")
    monkeypatch.setattr(lottery_run, "train", fail)
    assert call(lottery_argv(str(tmp_path / "lt"), fake_cifar, 1)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [PREFIX + "torch.compile failed (backend compiler failed); run with --no-compile"]
    assert any(p.fullmatch(err[0][len(PREFIX):]) for p in readme_messages()), f"not in troubleshooting.md: {err}"
