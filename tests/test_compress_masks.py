"""Masks survive checkpoints, resumption and ``train.py --init``."""
import json
import os

import pytest
import torch

from semisup.checkpoint import load_checkpoint, save_checkpoint
from semisup.compress.unstructured import magnitude_scores, masks_from_scores
from semisup.masks import get_masks, is_masked, load_masked, set_masks, sparsity, split_masks
from semisup.models import create_model, model_from_arch
from semisup.runner import main

from conftest import TINY


def masked_model(ratio=0.6, seed=0):
    torch.manual_seed(seed)
    model = create_model("wrn-10-tiny").eval()
    set_masks(model, masks_from_scores(magnitude_scores(model), ratio, "global"))
    return model


def test_split_and_load_roundtrip(tmp_path):
    model = masked_model()
    state, masks = split_masks(model)
    assert not any(k.endswith(("_orig", "_mask")) for k in state)  # a plain state dict
    save_checkpoint({"model_name": "wrn-10-tiny", "arch": model.arch, "model": state, "masks": masks}, str(tmp_path))
    loaded = load_checkpoint(os.path.join(tmp_path, "last.pt"))
    plain = model_from_arch(loaded["model_name"], loaded["arch"]).eval()
    plain.load_state_dict(loaded["model"])  # loads without knowing about masks
    again = model_from_arch(loaded["model_name"], loaded["arch"]).eval()
    load_masked(again, loaded["model"], loaded["masks"])
    assert all(is_masked(m) for n, m in again.named_modules() if f"{n}.weight" in masks)
    for key, mask in get_masks(again).items():
        assert torch.equal(mask, masks[key])
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again(x), model(x)) and torch.equal(plain(x), model(x))
    assert sparsity(again) == sparsity(plain) == sparsity(model)


def test_set_masks_overwrites_instead_of_stacking():
    model = masked_model(0.6)
    param = model.fc.weight_orig
    set_masks(model, masks_from_scores(magnitude_scores(model), 0.3, "global"))
    assert model.fc.weight_orig is param  # the optimizer's parameter object is kept
    n = sum(m.numel() for m in get_masks(model).values())
    assert sparsity(model) == pytest.approx(round(0.3 * n) / n)


def run(out, data, *extra):
    assert main(TINY + ["--data-dir", data, "--out", str(out), "--eval-every", "2", *extra]) == 0
    return load_checkpoint(os.path.join(out, "last.pt"))


@pytest.mark.parametrize("schedule", [["--prune-schedule", "agp", "--prune-every", "2", "--prune-end", "6"],
                                      ["--prune-schedule", "set", "--prune-start", "1", "--prune-every", "2"]])
def test_resume_with_masks_is_exact(tmp_path, fake_cifar, schedule):
    straight = run(tmp_path / "straight", fake_cifar, "--steps", "8", *schedule)
    run(tmp_path / "resumed", fake_cifar, "--steps", "4", *schedule)
    resumed = run(tmp_path / "resumed", fake_cifar, "--steps", "8", *schedule)
    assert straight["masks"] and set(straight["masks"]) == set(resumed["masks"])
    for key in straight["masks"]:
        assert torch.equal(straight["masks"][key], resumed["masks"][key]), key
    for part in ("model", "ema"):
        for key in straight[part]:
            assert torch.equal(straight[part][key], resumed[part][key]), (part, key)


def test_init_keeps_masks_while_fine_tuning(tmp_path, fake_cifar):
    base = run(tmp_path / "base", fake_cifar, "--steps", "2")
    model = model_from_arch(base["model_name"], base["arch"])
    model.load_state_dict(base["ema"])
    set_masks(model, masks_from_scores(magnitude_scores(model), 0.5, "global"))
    state, masks = split_masks(model)
    (tmp_path / "pruned").mkdir()
    save_checkpoint({"model_name": base["model_name"], "arch": base["arch"], "model": state, "ema": state,
                     "masks": masks, "config": base["config"]}, str(tmp_path / "pruned"))
    for algorithm in ("mixmatch", "supervised"):
        out = tmp_path / f"ft-{algorithm}"
        tuned = run(out, fake_cifar, "--steps", "4", "--algorithm", algorithm, "--init",
                    str(tmp_path / "pruned" / "last.pt"))
        for part in ("model", "ema"):
            for key, mask in masks.items():
                w = tuned[part][key]
                assert torch.all(w[~mask] == 0), (part, key)  # pruned weights stayed at zero
            assert not torch.equal(tuned[part]["fc.bias"], state["fc.bias"])  # and the rest trained
        assert json.loads((out / "config.json").read_text())["init"].endswith("last.pt")
