"""Sensitivity analysis and the ratio file: curves against layers pruned by hand, --max-drop's choice, the ratio file
in the pruning command and in train.py's schedules, and bad input refused with one line and nothing written."""
import json
import os

import pytest
import torch

from semisup.checkpoint import FORMAT, VERSION, atomic_save, load_checkpoint, model_from_checkpoint
from semisup.commands import sensitivity as sensitivity_command
from semisup.commands.compress import main as compress
from semisup.compress import netslim
from semisup.compress.sensitivity import analyse, ratio_within, ratios_within
from semisup.compress.surgery import remove_channels
from semisup.compress.training import RATIOS_KEY, PruneSchedule
from semisup.compress.unstructured import agp_sparsity
from semisup.config import Config, ConfigError, validate
from semisup.data import prepare_data
from semisup.models import create_model
from semisup.predict import accuracy, predict
from semisup.runner import main as train

from conftest import TINY, train_tiny
from test_bad_input import readme_messages

RATIOS = ["0.3", "0.6", "0.9"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fake_cifar):
    """A tiny network trained just enough (about 50 % on the fake test set) for pruning to change its accuracy."""
    return train_tiny(tmp_path_factory, fake_cifar, "sensrun", 30, "--algorithm", "supervised")


@pytest.fixture(scope="module")
def test_set(fake_cifar):
    data = prepare_data(fake_cifar, 40, 100, 1)
    return data.test.images, data.test.labels


def sensitivity(checkpoint, out, *flags):
    rc = compress(["sensitivity", "--checkpoint", checkpoint, "--out", str(out), "--threads", "1", *flags])
    assert rc == 0
    with open(os.path.join(out, "sensitivity.json")) as f:
        return json.load(f)


def ema(checkpoint):
    return model_from_checkpoint(load_checkpoint(checkpoint), "ema")


def test_magnitude_curves_equal_each_layer_pruned_by_hand(trained, tmp_path, test_set):
    result = sensitivity(trained, tmp_path, "--ratios", *RATIOS)
    images, labels = test_set
    assert result["base_acc"] == accuracy(predict(ema(trained), images), labels)
    assert list(result["layers"])[0] == "stem" and list(result["layers"])[-1] == "fc"
    for name in ("stem", "blocks.1.conv2", "fc"):
        for r, acc in zip(result["layers"][name]["ratios"], result["layers"][name]["accuracy"]):
            model = ema(trained)
            w = model.get_submodule(name).weight
            with torch.no_grad():
                w.view(-1)[w.abs().flatten().argsort()[:round(r * w.numel())]] = 0
            assert acc == accuracy(predict(model, images), labels), (name, r)
    drops = [result["base_acc"] - a for c in result["layers"].values() for a in c["accuracy"]]
    assert max(drops) > 5  # pruning changed the accuracy: the comparison means something


def test_slim_curves_equal_channel_removal(trained, tmp_path, test_set):
    """Zeroing bn2's γ and β (the analysis) gives the accuracy the surgery's real removal gives."""
    result = sensitivity(trained, tmp_path, "--method", "slim", "--ratios", "0.25", "0.5")
    images, labels = test_set
    for b, name in enumerate(["blocks.0.bn2", "blocks.1.bn2", "blocks.2.bn2"]):
        for r, acc in zip(result["layers"][name]["ratios"], result["layers"][name]["accuracy"]):
            model = ema(trained)
            inner = [torch.arange(blk.bn2.num_features) for blk in model.blocks]
            gamma = model.blocks[b].bn2.weight.detach().abs()
            inner[b] = gamma.argsort(stable=True)[round(r * len(gamma)):].sort().values
            small = remove_channels(model, inner, None)
            assert small.arch["inner"][b] == len(gamma) - round(r * len(gamma))
            assert acc == pytest.approx(accuracy(predict(small, images), labels), abs=1e-4), (name, r)


def test_network_slimming_units_are_masked_as_the_surgery_does():
    torch.manual_seed(0)
    model = create_model("densenet-40", 10, depth=10, growth=4).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand_like(m.weight)
    x = torch.randn(4, 3, 32, 32)
    result = analyse(model, "slim", [0.5], lambda m: m(x).sum().item())
    units = netslim.units(model)
    assert len(result["layers"]) == len(units)
    first, unit = next(iter(result["layers"].items())), units[0][0]
    keeps = [torch.arange(len(bn.weight)) for bn, _ in units]
    keeps[0] = unit.weight.detach().abs().argsort(stable=True)[round(0.5 * len(unit.weight)):].sort().values
    assert first[1]["accuracy"][0] == pytest.approx(netslim.mask_channels(model, keeps)(x).sum().item(), rel=1e-6)


def test_ratio_within_stops_where_the_curve_first_leaves_the_drop():
    ratios = [0.1, 0.2, 0.3, 0.4]
    assert ratio_within(ratios, [90, 89, 85, 89.5], 90, 1.0) == 0.2  # 0.4 is back within 1, but after a fall
    assert ratio_within(ratios, [88, 90, 90, 90], 90, 1.0) == 0.0
    assert ratio_within(ratios, [90, 90, None, 90], 90, 1.0) == 0.2  # not evaluated: would empty the layer
    assert ratio_within(ratios, [90, 90, 90, 90], 90, 0.0) == 0.4
    assert ratio_within([0.1], [90 - 1.0000020265579224], 90, 1.0) == 0.1  # float32's 1 image in 100


def test_max_drop_chooses_within_and_writes_the_files(trained, tmp_path):
    result = sensitivity(trained, tmp_path, "--ratios", "0.9", "0.3", "0.6", "0.3", "--max-drop", "1.5")
    assert result["ratios"] == [0.3, 0.6, 0.9]  # sorted, once each
    with open(tmp_path / "ratios.json") as f:
        written = json.load(f)
    assert written == {"method": "magnitude", "ratios": result["chosen"]}
    assert written["ratios"] == ratios_within(result["layers"], result["base_acc"], 1.5)
    assert len(set(written["ratios"].values())) > 1  # layers differ: the choice is per layer
    for name, r in written["ratios"].items():
        drops = [result["base_acc"] - a for a in result["layers"][name]["accuracy"]]
        chosen = result["ratios"].index(r) + 1 if r else 0
        assert all(d <= 1.5 + 1e-4 for d in drops[:chosen]), name
        assert chosen == len(drops) or drops[chosen] > 1.5, name
    with open(tmp_path / "sensitivity.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "sensitivity.txt").read_text().splitlines()
    assert "accuracy drop" in table[0] and table[1].split()[:3] == ["layer", "size", "0.3"]
    assert [line.split()[0] for line in table[2:]] == list(result["layers"])


@pytest.fixture(scope="module")
def split(fake_cifar):
    """The tiny run's data, split as it was (40 labeled, 100 validation images, seed 1)."""
    return prepare_data(fake_cifar, 40, 100, 1)


def rows(images):
    """Each image's bytes: which images a set holds, whatever their order."""
    return [x.numpy().tobytes() for x in images]


def evaluated_images(monkeypatch, checkpoint, out, *flags):
    """The images every evaluation of a sensitivity run used (checked to be the same for all), and its result."""
    seen = []

    def spy(model, images, *args, **kwargs):
        seen.append(images)
        return predict(model, images, *args, **kwargs)
    monkeypatch.setattr(sensitivity_command, "predict", spy)
    result = sensitivity(checkpoint, out, "--ratios", "0.5", *flags)
    assert len(seen) == 1 + len(result["layers"])  # the unpruned model, then each layer at the one ratio
    assert all(torch.equal(images, seen[0]) for images in seen)
    return seen[0], result


def test_on_valid_evaluates_the_runs_validation_images_only(trained, tmp_path, split, monkeypatch):
    images, result = evaluated_images(monkeypatch, trained, tmp_path / "all", "--on", "valid")
    assert torch.equal(images, split.valid.images)
    assert result["evaluated_on"] == "valid" and result["images"] == len(split.valid.labels) == 100
    assert result["base_acc"] == accuracy(predict(ema(trained), split.valid.images), split.valid.labels)
    some, result = evaluated_images(monkeypatch, trained, tmp_path / "some", "--on", "valid", "--subset", "30")
    assert len(some) == result["images"] == 30 and result["seed"] == 0
    valid = set(rows(split.valid.images))
    trained_on = set(rows(split.labeled.images)) | set(rows(split.unlabeled.images)) | set(rows(split.test.images))
    assert len(valid) == 100 and not valid & trained_on  # the generated images are all different
    assert set(rows(some)) <= valid and not set(rows(some)) & trained_on


def test_valid_subset_is_seeded(trained, tmp_path):
    a = sensitivity(trained, tmp_path / "a", "--on", "valid", "--subset", "50", "--ratios", "0.5")
    b = sensitivity(trained, tmp_path / "b", "--on", "valid", "--subset", "50", "--ratios", "0.5")
    c = sensitivity(trained, tmp_path / "c", "--on", "valid", "--subset", "50", "--ratios", "0.5", "--seed", "1")
    assert a["layers"] == b["layers"] and a["base_acc"] == b["base_acc"]
    assert a["layers"] != c["layers"]


def test_channel_ratios_past_the_cap_are_not_evaluated(trained, tmp_path):
    """0.95 of a 16-channel group removes 15, past the pruning command's default cap (0.9: 14): not evaluated, so
    the chosen ratios stay within the cap and the pruning command accepts the file."""
    result = sensitivity(trained, tmp_path / "sens", "--method", "slim", "--ratios", "0.5", "0.95",
                         "--max-drop", "100")
    assert result["max_layer_ratio"] == 0.9
    assert all(layer["accuracy"][1] is None for layer in result["layers"].values())
    assert set(result["chosen"].values()) == {0.5}
    assert compress(["--checkpoint", trained, "--out", str(tmp_path / "pruned"), "--method", "slim", "--ratio-file",
                     str(tmp_path / "sens" / "ratios.json"), "--no-eval", "--latency-repeats", "1",
                     "--threads", "1"]) == 0
    uncapped = sensitivity(trained, tmp_path / "uncapped", "--method", "slim", "--ratios", "0.95",
                           "--max-layer-ratio", "1")
    assert uncapped["layers"]["blocks.1.bn2"]["accuracy"][0] is not None  # 16 channels: one left


def ratio_file(path, ratios, method="magnitude"):
    path.write_text(json.dumps({"method": method, "ratios": ratios}))
    return str(path)


def test_ratio_file_prunes_each_layer_to_its_ratio(trained, tmp_path):
    ratios = {"stem": 0.1, "blocks.0.conv1": 0.5, "blocks.2.conv2": 0.8, "fc": 0.3}
    path = ratio_file(tmp_path / "r.json", ratios)
    for method in ("magnitude", "taylor"):
        out = tmp_path / method
        assert compress(["--checkpoint", trained, "--out", str(out), "--method", method, "--ratio-file", path,
                         "--no-eval", "--latency-repeats", "1", "--threads", "1"]) == 0
        masks = load_checkpoint(str(out / "pruned.pt"))["masks"]
        for key, mask in masks.items():
            assert int((~mask).sum()) == round(ratios.get(key[:-len(".weight")], 0.0) * mask.numel()), (method, key)
        with open(out / "report.json") as f:
            assert json.load(f)["ratios"] == ratios


def test_ratio_file_sets_each_blocks_inner_width(trained, tmp_path):
    path = ratio_file(tmp_path / "r.json", {"blocks.0.bn2": 0.5, "blocks.2.bn2": 0.25}, "slim")
    for method in ("slim", "l1-filter"):
        out = tmp_path / method
        assert compress(["--checkpoint", trained, "--out", str(out), "--method", method, "--ratio-file", path,
                         "--no-eval", "--latency-repeats", "1", "--threads", "1"]) == 0
        assert load_checkpoint(str(out / "pruned.pt"))["arch"]["inner"] == [4, 16, 12]


def test_agp_ramps_each_layer_to_its_own_ratio(tmp_path):
    ratios = {"blocks.0.conv2": 0.5, "fc": 0.2}
    cfg = Config(prune_schedule="agp", prune_ratio_file=ratio_file(tmp_path / "r.json", ratios), prune_start=0,
                 prune_end=10, prune_every=2, prune_initial=0.3, steps=10)
    torch.manual_seed(0)
    model = create_model("wrn-10-tiny", 10)
    masks = PruneSchedule(cfg).masks(model, 4)
    for key, mask in masks.items():
        r = ratios.get(key[:-len(".weight")], 0.0)
        target = agp_sparsity(4, min(0.3, r), r, 0, 10)  # fc starts at its own 0.2, not at --prune-initial 0.3
        assert int((~mask).sum()) == round(target * mask.numel()), key


def densenet_checkpoint(tmp_path, trained):
    """A tiny DenseNet-40 (network slimming's surgery) with the tiny run's configuration, so its data loads."""
    torch.manual_seed(0)
    model = create_model("densenet-40", 10, depth=10, growth=4)
    path = str(tmp_path / "densenet.pt")
    atomic_save({"format": FORMAT, "version": VERSION, "model_name": "densenet-40", "arch": dict(model.arch),
                 "model": model.state_dict(), "ema": model.state_dict(), "step": 0,
                 "config": load_checkpoint(trained)["config"]}, path)
    return path


def test_ratio_file_slims_network_slimmings_units(trained, tmp_path):
    path = ratio_file(tmp_path / "r.json", {"blocks.1.bn": 0.5, "bn": 0.25}, "slim")
    out = tmp_path / "slim"
    assert compress(["--checkpoint", densenet_checkpoint(tmp_path, trained), "--out", str(out), "--method", "slim",
                     "--ratio-file", path, "--no-eval", "--latency-repeats", "1", "--threads", "1"]) == 0
    keep = load_checkpoint(str(out / "pruned.pt"))["arch"]["keep"]
    assert [None if k is None else len(k) for k in keep] == [None, 6, None, None, None, None, None, None, 24]


def test_ratio_file_drives_the_oneshot_schedule(trained, tmp_path, fake_cifar):
    ratios = {"blocks.0.conv2": 0.5, "blocks.1.conv1": 0.7, "fc": 0.2}
    path = ratio_file(tmp_path / "r.json", ratios)
    out = tmp_path / "run"
    assert train(TINY + ["--data-dir", fake_cifar, "--out", str(out), "--steps", "2", "--eval-every", "2",
                         "--prune-schedule", "oneshot", "--prune-ratio-file", path]) == 0
    state = load_checkpoint(str(out / "last.pt"))
    for key, mask in state["masks"].items():
        expected = round(ratios.get(key[:-len(".weight")], 0.0) * mask.numel())
        assert int((~mask).sum()) == expected, key
        assert int((state["ema"][key] == 0).sum()) >= expected, key


BAD_FILES = {"unknown layer": ({"method": "magnitude", "ratios": {"blocks.0.conv9": 0.5}},
                               "names 1 layer(s) this network does not have"),
             "ratio 1": ({"method": "magnitude", "ratios": {"fc": 1.0}}, "ratios must lie in [0, 1)"),
             "negative": ({"method": "magnitude", "ratios": {"fc": -0.1}}, "ratios must lie in [0, 1)"),
             "a list": ([0.5], "expected {"), "no layers": ({"ratios": {}}, "expected {"),
             "channel groups": ({"method": "slim", "ratios": {"blocks.0.bn2": 0.5}},
                                "is a slim file, of channel groups; "),
             "unknown method": ({"method": "prune", "ratios": {"fc": 0.5}},
                                "method 'prune' is none of magnitude, taylor, slim, l1-filter"),
             "no method": ({"ratios": {"fc": 0.5}}, "method None is none of")}


PREFIXES = ("python -m semisup.compress sensitivity: error: ", "python -m semisup.compress: error: ",
            "train.py: error: ")


def refused(argv, capsys, runner=compress):
    """The stderr line of a command refused with exit code 2 (train.py's flag checks exit through SystemExit),
    checked to be one line that docs/troubleshooting.md lists."""
    try:
        rc = runner(argv)
    except SystemExit as stop:
        rc = stop.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    prefix = next(p for p in PREFIXES if err.startswith(p))
    assert any(p.fullmatch(err[len(prefix):]) for p in readme_messages()), f"not in troubleshooting.md: {err}"
    return err


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_ratio_file_is_one_line_and_writes_nothing(trained, tmp_path, capsys, fake_cifar, case):
    doc, message = BAD_FILES[case]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    err = refused(["--checkpoint", trained, "--out", str(out), "--method", "magnitude", "--ratio-file", str(path)],
                  capsys)
    assert err.startswith("python -m semisup.compress: error: ratio file") and message in err
    err = refused(TINY + ["--data-dir", fake_cifar, "--out", str(out), "--steps", "2", "--prune-schedule", "agp",
                          "--prune-ratio-file", str(path)], capsys, train)
    assert err.startswith("train.py: error: ratio file") and message in err
    assert not out.exists()


@pytest.mark.parametrize("content, message", [(None, "cannot read it"), ("{", "not JSON")])
def test_unreadable_ratio_file(trained, tmp_path, capsys, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    err = refused(["--checkpoint", trained, "--out", str(tmp_path / "out"), "--method", "slim", "--ratio-file",
                   str(path)], capsys)
    assert message in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("method, ratios, flags, message", [
    ("slim", {"fc": 0.5}, ["--method", "slim"], "names 1 layer(s) this network does not have"),
    ("magnitude", {"fc": 0.5}, ["--method", "slim"],
     "is a magnitude file, of conv/linear layers; --method slim prunes channel groups (slim or l1-filter files)"),
    ("l1-filter", {"blocks.0.bn2": 0.5}, ["--method", "taylor"],
     "is a l1-filter file, of channel groups; --method taylor prunes conv/linear layers (magnitude or taylor files)"),
    ("magnitude", {"fc": 0.5}, ["--method", "magnitude", "--ratio", "0.5"], "drop --ratio and --scope"),
    ("slim", {"fc": 0.5}, ["--method", "slim", "--prune-residual"], "--prune-residual has no ratio there"),
    ("slim", {"blocks.0.bn2": 0.95}, ["--method", "slim"],
     "blocks.0.bn2: ratio 0.95 removes more than the per-layer cap"),
])
def test_ratio_file_with_the_wrong_flags(trained, tmp_path, capsys, method, ratios, flags, message):
    path = ratio_file(tmp_path / "r.json", ratios, method)
    err = refused(["--checkpoint", trained, "--out", str(tmp_path / "out"), "--ratio-file", path, *flags], capsys)
    assert message in err and not (tmp_path / "out").exists()


def no_valid_checkpoint(tmp_path, trained):
    """The tiny run's checkpoint as a run with --n-valid 0 would have written it."""
    state = load_checkpoint(trained)
    state["config"] = {**state["config"], "n_valid": 0}
    path = str(tmp_path / "novalid.pt")
    atomic_save(state, path)
    return path


@pytest.mark.parametrize("flags, message", [
    (["--max-drop", "-1"], "--max-drop must not be negative (got -1.0)"),
    (["--ratios"], "--ratios needs at least one ratio in [0, 1)"),
    (["--ratios", "0.5", "1"], "--ratios must lie in [0, 1) (got 1.0)"),
    (["--ratios", "-0.1"], "--ratios must lie in [0, 1) (got -0.1)"),
    (["--on", "valid", "--subset", "0"], "--subset must be at least 1 (got 0)"),
    (["--on", "valid", "--subset", "101"], "--subset 101 is more than the run's 100 validation images (--n-valid)"),
    (["--subset", "10"], "--subset picks validation images: it needs --on valid"),
    (["--on", "valid", "--checkpoint", "novalid"], "held out no validation images (--n-valid 0); use --on test"),
    (["--max-layer-ratio", "0"], "--max-layer-ratio must be in (0, 1] (got 0.0)"),
    (["--method", "l1-filter", "--checkpoint", "densenet"], "--method l1-filter is for the WRN"),
])
def test_bad_sensitivity_input_is_one_line_and_writes_nothing(trained, tmp_path, capsys, flags, message):
    made = {"densenet": densenet_checkpoint, "novalid": no_valid_checkpoint}
    flags = [made[f](tmp_path, trained) if f in made else f for f in flags]
    out = tmp_path / "out"
    err = refused(["sensitivity", "--checkpoint", trained, "--out", str(out), *flags], capsys)
    assert err.startswith("python -m semisup.compress sensitivity: error:") and message in err
    assert not out.exists()


def test_prune_ratio_file_needs_a_schedule_that_takes_it(tmp_path, capsys, fake_cifar):
    path = ratio_file(tmp_path / "r.json", {"fc": 0.5})
    for schedule in ("none", "set"):
        err = refused(TINY + ["--data-dir", fake_cifar, "--out", str(tmp_path / "out"), "--prune-schedule", schedule,
                              "--prune-ratio-file", path], capsys, train)
        assert "--prune-ratio-file needs --prune-schedule oneshot, iterative or agp" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    (["--prune-ratio", "0.3"], "--prune-ratio-file gives every layer its own ratio: drop --prune-ratio and "
                               "--prune-scope"),
    (["--prune-scope", "local"], "drop --prune-ratio and --prune-scope"),
    (["--prune-initial", "1"], "--prune-initial must be in [0, 1) (got 1.0)"),
])
def test_prune_ratio_file_refuses_the_flags_it_replaces(tmp_path, capsys, fake_cifar, flags, message):
    path = ratio_file(tmp_path / "r.json", {"fc": 0.5})
    err = refused(TINY + ["--data-dir", fake_cifar, "--out", str(tmp_path / "out"), "--prune-schedule", "agp",
                          "--prune-ratio-file", path, *flags], capsys, train)
    assert message in err and not (tmp_path / "out").exists()


def test_prune_initial_above_the_default_ratio_is_taken_with_a_ratio_file(tmp_path):
    """--prune-initial is capped by --prune-ratio, which a ratio file replaces: each layer ramps from
    min(--prune-initial, its own ratio) instead."""
    ratios = {"blocks.0.conv2": 0.9, "fc": 0.2}
    path = ratio_file(tmp_path / "r.json", ratios)
    with pytest.raises(ConfigError, match=r"--prune-initial must be in \[0, --prune-ratio\]"):
        validate(Config(prune_schedule="agp", prune_initial=0.7, steps=10))
    cfg = validate(Config(prune_schedule="agp", prune_ratio_file=path, prune_initial=0.7, prune_every=2, steps=10))
    torch.manual_seed(0)
    masks = PruneSchedule(cfg).masks(create_model("wrn-10-tiny", 10), 0)
    assert int((~masks["blocks.0.conv2.weight"]).sum()) == round(0.7 * masks["blocks.0.conv2.weight"].numel())
    assert int((~masks["fc.weight"]).sum()) == round(0.2 * masks["fc.weight"].numel())


def test_a_slim_ratio_file_is_refused_by_train_py(tmp_path, capsys, fake_cifar):
    path = ratio_file(tmp_path / "r.json", {"blocks.0.bn2": 0.5}, "slim")
    err = refused(TINY + ["--data-dir", fake_cifar, "--out", str(tmp_path / "out"), "--prune-schedule", "oneshot",
                          "--prune-ratio-file", path], capsys, train)
    assert ("is a slim file, of channel groups; train.py --prune-ratio-file prunes conv/linear layers (magnitude or "
            "taylor files)") in err
    assert not (tmp_path / "out").exists()


def test_a_resumed_run_refuses_a_ratio_file_that_changed(tmp_path, capsys, fake_cifar):
    ratios = {"blocks.0.conv2": 0.5, "fc": 0.2}
    path = ratio_file(tmp_path / "r.json", ratios)
    out = tmp_path / "run"
    flags = TINY + ["--data-dir", fake_cifar, "--out", str(out), "--eval-every", "2", "--prune-schedule", "agp",
                    "--prune-end", "8", "--prune-every", "2", "--prune-ratio-file", path]
    assert train(flags + ["--steps", "2"]) == 0
    assert load_checkpoint(str(out / "last.pt"))[RATIOS_KEY] == ratios
    before = {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)}
    ratio_file(tmp_path / "r.json", {"blocks.0.conv2": 0.6, "fc": 0.2, "stem": 0.1})
    err = refused(flags + ["--steps", "4"], capsys, train)
    assert ("was pruned to other ratios than the ratio file" in err
            and "(blocks.0.conv2: 0.5 -> 0.6, stem: - -> 0.1); restore the file, or use another --out" in err)
    assert {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)} == before
    ratio_file(tmp_path / "r.json", ratios)
    assert train(flags + ["--steps", "4"]) == 0  # the same ratios again: resumed
    assert load_checkpoint(str(out / "last.pt"))["step"] == 4
