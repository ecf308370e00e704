"""ReMixMatch against the official equations worked by hand: distribution alignment and its buffers, the rotations,
the weights and ramps, the stop-gradient of the guess, the last mixed pass's batch-norm update, the strong labeled
view, the state and resume, the recipe and the refusals."""
from contextlib import nullcontext

import pytest
import torch

from semisup.algorithms.base import Models
from semisup.algorithms.remixmatch import (
    DistributionAlignment,
    ReMixMatch,
    ReMixMatchRows,
    align,
    rotate_by_position,
    rotation_labels,
)
from semisup.algorithms.strong import StrongAugment
from semisup.augment import to_float
from semisup.config import Config, ConfigError, parse_args, validate
from semisup.mixmatch import interleave, sharpen
from semisup.models import create_model
from semisup.strong import CTAugment

from accum_support import single_process_trainer, straight_and_resumed, tiny_config, tiny_model


def _algorithm(**overrides) -> ReMixMatch:
    return ReMixMatch(validate(Config(algorithm="remixmatch", **overrides)), 3)


def test_alignment_by_hand():
    p = torch.tensor([[0.6, 0.2, 0.2]])
    p_data, p_model = torch.tensor([0.2, 0.3, 0.5]), torch.tensor([0.5, 0.25, 0.25])
    # 0.6·0.2/0.5, 0.2·0.3/0.25, 0.2·0.5/0.25 = 0.24, 0.24, 0.4, over their sum 0.88
    expected = torch.tensor([[0.24, 0.24, 0.4]]) / 0.88
    torch.testing.assert_close(align(p, p_data, p_model), expected, rtol=1e-5, atol=0)
    # then T = 0.5 squares and renormalises: 0.0576, 0.0576, 0.16 over 0.2752
    torch.testing.assert_close(sharpen(align(p, p_data, p_model), 0.5),
                               torch.tensor([[0.0576, 0.0576, 0.16]]) / 0.2752, rtol=1e-5, atol=0)


def test_the_buffer_starts_uniform_and_drops_its_oldest_row():
    da = DistributionAlignment(3, dbuf=4)
    assert torch.equal(da.buffer, torch.full((4, 3), 1 / 3))
    p_data, p_model = da.read("cpu")
    torch.testing.assert_close(p_data, torch.full((3,), 1 / 3))
    torch.testing.assert_close(p_model, torch.full((3,), 1 / 3))
    da.update(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(da.read("cpu")[1], torch.tensor([0.5, 0.25, 0.25]))  # (3 uniform rows + e0) / 4
    torch.testing.assert_close(da.p_data, torch.tensor([0.999 / 3, 0.999 / 3 + 0.001, 0.999 / 3]))
    for _ in range(3):
        da.update(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(da.buffer[0], torch.tensor([1.0, 0.0, 0.0]))  # four rows: the uniform ones are gone
    da.update(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(da.read("cpu")[1], torch.tensor([0.0, 0.0, 1.0]))


def test_the_guess_reads_the_distributions_before_this_batch_updates_them():
    alg = _algorithm(T=0.5)
    p = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    first = alg.guess(p, torch.tensor([0, 0]))
    torch.testing.assert_close(first, sharpen(p, 0.5))  # uniform p_data and p_model: alignment changes nothing
    torch.testing.assert_close(alg.alignment.buffer[-1], p.mean(0))
    p_data = torch.tensor([1 / 3 * 0.999 + 0.001, 1 / 3 * 0.999, 1 / 3 * 0.999])
    p_model = (127 * torch.full((3,), 1 / 3) + p.mean(0)) / 128
    torch.testing.assert_close(alg.guess(p, torch.tensor([0, 0])), sharpen(align(p, p_data, p_model), 0.5))


def test_rotations_by_position():
    x = torch.arange(8 * 4).view(8, 1, 2, 2)
    rotated, labels = rotate_by_position(x)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    a, b, c, d = 8, 9, 10, 11  # image 2, [[a, b], [c, d]]: the first of the 180° quarter
    assert rotated[2, 0].tolist() == [[d, c], [b, a]]
    a, b, c, d = 16, 17, 18, 19  # image 4: 90° counter-clockwise
    assert rotated[4, 0].tolist() == [[b, d], [a, c]]
    a, b, c, d = 24, 25, 26, 27  # image 6: 90° clockwise
    assert rotated[6, 0].tolist() == [[c, a], [d, b]]
    assert torch.equal(rotated[:2], x[:2])
    for k, rot in ((1, 2), (2, 1), (3, -1)):
        assert torch.equal(rotated[2 * k:2 * k + 2], torch.rot90(x[2 * k:2 * k + 2], rot, (2, 3)))
    assert rotation_labels(10).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]  # the remainder turns clockwise


@pytest.mark.parametrize("images, ramp", [(0, 0.0), (2 ** 19, 0.5), (2 ** 20, 1.0), (2 ** 22, 1.0)])
def test_weights_and_ramps(images, ramp):
    """w_match and w_kl ramp over warmup_kimg·1024 labeled images (16,384 steps at batch 64); w_rot does not."""
    w = _algorithm().weights(images)
    assert w == pytest.approx({"u": 1.5 * ramp, "kl": 0.5 * ramp, "rot": 0.5})
    assert _algorithm(warmup_kimg=0.0).weights(0) == pytest.approx({"u": 1.5, "kl": 0.5, "rot": 0.5})


def test_the_guess_carries_no_gradient():
    torch.manual_seed(0)
    model = create_model("wrn-10-tiny", 3)
    alg = _algorithm(K=2)
    model = alg.prepare_model(model)
    x_lb = torch.randn(8, 3, 32, 32)
    views = [torch.randn(8, 3, 32, 32, requires_grad=True) for _ in range(3)]
    rows = alg.batch(x_lb, torch.arange(8) % 3, views, Models(model, model))
    assert not rows.guess.requires_grad and not rows.mixed.targets.requires_grad
    assert rows.mixed.x.requires_grad  # the mixed inputs do depend on the views (no gradient reaches them in training)
    terms = alg.loss(model, rows, nullcontext)
    terms["kl"].backward()
    assert views[0].grad is None  # the weak view only feeds the guess here
    assert torch.count_nonzero(views[1].grad) > 0  # strong view 1 is trained towards the guess


def test_only_the_last_mixed_pass_updates_batch_norm(fake_cifar):
    """Running mean after one step = before·(1 − m) + m·(the last interleaved mixed chunk's batch mean); the guess,
    the pre-mixup and the rotation passes use their own statistics and leave the running ones."""
    trainer = single_process_trainer(tiny_config(fake_cifar, algorithm="remixmatch", K=2, warm_averages=False),
                                     tiny_model(1))
    bn = trainer.bn_layers[0]
    passes, seen = [], []
    trainer.model.register_forward_pre_hook(
        lambda m, a, kw: passes.append((a[0].detach().clone(), kw.get("rotation", False), torch.is_grad_enabled(),
                                        bn.track_running_stats)), with_kwargs=True)
    bn.register_forward_pre_hook(lambda m, a: seen.append((a[0].detach().clone(), m.track_running_stats)))
    batch = trainer.next_batch()
    assert isinstance(batch, ReMixMatchRows) and len(batch.mixed.x) == 8 * 4
    before = bn.running_mean.clone()
    passes.clear(), seen.clear()
    trainer.apply_batch(batch)
    tracked = [x for x, tracking in seen if tracking]
    assert len(tracked) == 1
    expected = before * (1 - bn.momentum) + bn.momentum * tracked[0].float().mean((0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expected, rtol=1e-5, atol=1e-7)
    last = interleave(list(batch.mixed.x.split(8)), 8)[-1]
    assert [torch.equal(x, last) for x, _, _, tracking in passes if tracking] == [True]
    untracked = [(x, rotation) for x, rotation, _, tracking in passes if not tracking]
    assert len(untracked) == 3 + 2  # K+1 other mixed chunks, strong view 1, the rotated images
    assert any(rotation and torch.equal(x, batch.rotated) for x, rotation in untracked)
    assert any(not rotation and torch.equal(x, batch.strong1) for x, rotation in untracked)


def test_the_labeled_view_is_the_strong_view_of_the_weak_labeled_image(fake_cifar):
    trainer = single_process_trainer(tiny_config(fake_cifar, algorithm="remixmatch", K=2), tiny_model(1))
    alg, seen = trainer.algorithm, {}
    alg.strong = lambda images: 255 - images
    alg.observe_labeled = lambda images, labels, models: seen.update(raw=images)
    make = alg.batch
    alg.batch = lambda x_lb, y_lb, x_ulb, models: seen.update(x_lb=x_lb, views=len(x_ulb)) or make(x_lb, y_lb, x_ulb,
                                                                                                      models)
    trainer.next_batch()
    assert torch.equal(seen["x_lb"], to_float(255 - seen["raw"])) and seen["views"] == 3
    assert trainer.samplers["unlabeled"].n == len(trainer.data.labeled) + len(trainer.data.unlabeled)


def test_remixmatch_strong_view_has_no_cutout(monkeypatch):
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    monkeypatch.setattr(CTAugment, "policy", lambda self, probe, generator=None: [("identity", [])] * 2)
    for cutout, same in ((False, True), (True, False)):
        assert torch.equal(StrongAugment("cta", cutout=cutout)(images), images) == same
    with pytest.raises(ValueError, match="only CTAugment"):
        StrongAugment("ra", cutout=False)


def test_state_round_trip_and_exact_resume(fake_cifar):
    cfg = tiny_config(fake_cifar, algorithm="remixmatch", K=2, dbuf=4, accum_steps=2)
    straight, resumed, state = straight_and_resumed(cfg)  # the state after two steps, resumed for the third
    saved = state["algorithm"]["alignment"]
    assert torch.equal(saved["p_model"][:2], torch.full((2, 10), 0.1))  # two of four rows still the initial ones
    assert not torch.equal(saved["p_model"][2:], torch.full((2, 10), 0.1))
    assert "rotation_head.weight" in state["model"] and state["arch"]["rotation_head"] == 4
    for a, b in zip(list(resumed.model.state_dict().values()) + list(resumed.ema.model.state_dict().values()),
                    list(straight.model.state_dict().values()) + list(straight.ema.model.state_dict().values())):
        assert torch.equal(a, b)
    mine, theirs = resumed.algorithm.state_dict(), straight.algorithm.state_dict()
    assert all(torch.equal(mine["alignment"][k], theirs["alignment"][k]) for k in ("p_data", "p_model"))
    assert all(torch.equal(x, y) for k in mine["cta"]["weights"]
               for x, y in zip(mine["cta"]["weights"][k], theirs["cta"]["weights"][k]))


def test_the_recipe_and_the_options():
    cfg = validate(Config(algorithm="remixmatch"))
    assert (cfg.optimizer, cfg.lr, cfg.nesterov, cfg.lr_schedule, cfg.wd, cfg.wd_mode) == (
        "sgd", 0.03, True, "cosine-7/16", 5e-4, "l2-kernels")
    assert (cfg.K, cfg.T, cfg.alpha, cfg.w_match, cfg.w_kl, cfg.w_rot, cfg.warmup_kimg, cfg.dbuf) == (
        8, 0.5, 0.75, 1.5, 0.5, 0.5, 1024.0, 128)


def test_the_rotation_head_needs_a_wide_resnet():
    with pytest.raises(ConfigError, match="rotation loss needs a WideResNet"):
        _algorithm().prepare_model(create_model("vgg11"))
    model = _algorithm().prepare_model(create_model("wrn-10-tiny"))
    head = model.rotation_head
    assert head.out_features == 4 and _algorithm().prepare_model(model).rotation_head is head  # added once
    rebuilt = create_model("wrn-10-tiny", **{k: v for k, v in model.arch.items() if k != "num_classes"})
    assert rebuilt.rotation_head.weight.shape == head.weight.shape  # the checkpoint's arch rebuilds it


@pytest.mark.parametrize("argv, words", [
    (["--K", "0"], "--K must be at least 1 (got 0)"),
    (["--w-match", "-1"], "--w-match must be non-negative (got -1.0)"),
    (["--w-kl", "-0.5"], "--w-kl must be non-negative (got -0.5)"),
    (["--w-rot", "-2"], "--w-rot must be non-negative (got -2.0)"),
    (["--warmup-kimg", "-1"], "--warmup-kimg must be non-negative (got -1.0)"),
    (["--dbuf", "0"], "--dbuf must be at least 1 (got 0)"),
    (["--T", "0"], "--T must be positive (got 0.0)"),
    (["--lambda-u", "1"], "--lambda-u is an option of"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--algorithm", "remixmatch"] + argv + ["--out", str(tmp_path / "run")], prog="train.py")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
