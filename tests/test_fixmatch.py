"""FixMatch and UDA against the official equations worked by hand, their stop-gradients, the joint pass's batch-norm
update, the unlabeled set with the labeled images, CTAugment's resume, the recipe and the refusals."""
import math

import pytest
import torch
import torch.nn.functional as F

from semisup.algorithms.base import check_data, unlabeled_pool
from semisup.algorithms.fixmatch import FixMatch, UnlabeledRows, confident_pseudo_labels, pseudo_label_loss
from semisup.algorithms.strong import StrongAugment
from semisup.algorithms.uda import annealed_loss, kl_consistency, tsa_threshold
from semisup.config import Config, ConfigError, parse_args, validate
from semisup.data import Dataset, SSLData
from semisup.optim import cosine_7_16, make_optimizer, make_scheduler

from accum_support import single_process_trainer, straight_and_resumed, tiny_config, tiny_model


def test_the_threshold_counts_at_exactly_tau():
    logits = torch.tensor([[math.log(3.0), 0.0, 0.0], [0.0, 0.0, 0.0]])  # softmax max: 3/5 and 1/3
    tau = logits.softmax(-1).max(-1).values[0].item()
    labels, mask = confident_pseudo_labels(logits, tau)
    assert labels[0] == 0 and mask.tolist() == [1.0, 0.0]
    above = torch.nextafter(torch.tensor(tau), torch.tensor(1.0)).item()  # the next float32 after τ
    _, mask = confident_pseudo_labels(logits, above)
    assert mask.tolist() == [0.0, 0.0]


def test_fixmatch_loss_by_hand_is_the_masked_mean_over_all_unlabeled_rows():
    weak = torch.tensor([[4.0, 0.0], [0.0, 0.1], [0.0, 5.0]])  # confident, not confident, confident (class 1)
    strong = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.5, 0.5]])
    # CE(0, [1, 2]) = log(e + e^2) - 1; CE(1, [.5, .5]) = log 2; the middle row is masked but counted in the mean
    expected = ((math.log(math.e + math.e ** 2) - 1) + math.log(2)) / 3
    assert pseudo_label_loss(weak, strong, 0.9, 3).item() == pytest.approx(expected, rel=1e-6)
    # micro-batches: each divides by the whole batch's unlabeled rows, so the parts add up
    parts = pseudo_label_loss(weak[:1], strong[:1], 0.9, 3) + pseudo_label_loss(weak[1:], strong[1:], 0.9, 3)
    assert parts.item() == pytest.approx(expected, rel=1e-6)


def test_the_pseudo_labels_carry_no_gradient():
    weak = torch.tensor([[4.0, 0.0], [0.0, 5.0]], requires_grad=True)
    strong = torch.tensor([[1.0, 2.0], [0.5, 0.5]], requires_grad=True)
    pseudo_label_loss(weak, strong, 0.9, 2).backward()
    assert weak.grad is None or torch.count_nonzero(weak.grad) == 0
    assert torch.count_nonzero(strong.grad) > 0
    weak.grad = strong.grad = None
    kl_consistency(weak, strong, 0.5, 0.9, 2).backward()
    assert weak.grad is None or torch.count_nonzero(weak.grad) == 0
    assert torch.count_nonzero(strong.grad) > 0


def test_uda_kl_by_hand_with_the_mask_on_the_unsharpened_softmax():
    weak = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # softmax (3/4, 1/4) and (1/2, 1/2)
    strong = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    # T = 0.5 sharpens row 0 to (9/10, 1/10); its unsharpened maximum 3/4 passes τ = 0.75, row 1 does not
    p = torch.tensor([0.9, 0.1])
    expected = (p * (p.log() - torch.tensor([0.5, 0.5]).log())).sum().item() / 2
    assert kl_consistency(weak, strong, 0.5, 0.75, 2).item() == pytest.approx(expected, rel=1e-5)
    # with τ just above 3/4 nothing passes, although the sharpened 0.9 would
    assert kl_consistency(weak, strong, 0.5, 0.7500001, 2).item() == 0.0


@pytest.mark.parametrize("schedule, r, coeff", [
    ("linear", 0.5, 0.5), ("linear", 2.0, 1.0), ("exp", 1.0, 1.0), ("exp", 0.5, math.exp(-2.5)),
    ("log", 0.2, 1 - math.exp(-1.0)), ("no", 0.0, 1.0),
])
def test_tsa_schedules_by_hand(schedule, r, coeff):
    """r = images / (min(kimg, 16384)·2^tsa_pos): 2^20 steps of 64 images give 2^22 images, 1/16 of the run."""
    train_images = 64 * 2 ** 20
    horizon = 16384 * 2 ** 8
    assert horizon == train_images // 16
    assert tsa_threshold(schedule, r * horizon, train_images, 10, 8) == pytest.approx(coeff * 0.9 + 0.1)


def test_tsa_keeps_the_rows_below_the_threshold_normalised_by_their_count():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    y = torch.tensor([0, 0, 1])  # p_true: 0.88, 0.12, 0.5
    ce = F.cross_entropy(logits, y, reduction="none")
    assert annealed_loss(logits, y, 0.6, 3).item() == pytest.approx(((ce[1] + ce[2]) / 2).item(), rel=1e-6)
    assert annealed_loss(logits, y, 1.0, 3).item() == pytest.approx(ce.mean().item(), rel=1e-6)
    assert annealed_loss(logits, y, 0.05, 3).item() == 0.0


def test_the_recipe_is_the_algorithms_default_and_stays_overridable():
    cfg = validate(Config(algorithm="fixmatch"))
    assert (cfg.optimizer, cfg.lr, cfg.nesterov, cfg.lr_schedule, cfg.wd, cfg.wd_mode, cfg.uratio) == (
        "sgd", 0.03, True, "cosine-7/16", 5e-4, "l2-kernels", 7)
    assert (cfg.confidence, cfg.lambda_u, cfg.strong_aug) == (0.95, 1.0, "ra")
    mm = validate(Config())
    assert (mm.optimizer, mm.lr, mm.lr_schedule, mm.wd, mm.wd_mode) == ("adam", 0.002, "constant", 0.02, "decoupled")
    mine = parse_args(["--algorithm", "uda", "--lr", "0.01", "--wd-mode", "decoupled"])
    assert (mine.lr, mine.wd_mode, mine.optimizer, mine.T, mine.tsa) == (0.01, "decoupled", "sgd", 1.0, "no")


def test_l2_on_kernels_only_and_the_cosine_over_seven_sixteenths():
    cfg = validate(Config(algorithm="fixmatch", steps=100))
    model = tiny_model(0)
    opt = make_optimizer(model, cfg, "cpu")
    decayed, plain = opt.param_groups
    kernels = {id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert {id(p) for p in decayed["params"]} == kernels and decayed["weight_decay"] == 5e-4
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) > 0  # biases, batch norm
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    sched = make_scheduler(opt, cfg)
    rates = []
    for _ in range(100):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == 0.03 and rates[50] == pytest.approx(0.03 * math.cos(7 * math.pi / 32))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.03 * math.cos(7 * math.pi / 16))  # 0.00585 at the end
    assert cosine_7_16(200, 100) == pytest.approx(math.cos(7 * math.pi / 16))


def _images(n: int, channels: int = 3) -> Dataset:
    return Dataset(torch.arange(n * channels * 4, dtype=torch.uint8).reshape(n, channels, 2, 2), torch.arange(n) % 2)


def test_the_unlabeled_set_includes_the_labeled_images_without_their_labels():
    data = SSLData(labeled=_images(4), unlabeled=_images(6), valid=_images(0), test=_images(0), split=None,
                   num_classes=2)
    alg = FixMatch(validate(Config(algorithm="fixmatch")), 2)
    pool = unlabeled_pool(data, alg)
    assert len(pool) == 10 and torch.equal(pool.images[:4], data.labeled.images)
    assert pool.labels[:4].tolist() == [-1] * 4
    assert unlabeled_pool(data, FixMatch.__mro__[1](validate(Config()), 2)) is data.unlabeled


def test_strong_augmentation_refuses_images_that_are_not_rgb():
    data = SSLData(labeled=_images(4, 1), unlabeled=_images(6, 1), valid=_images(0, 1), test=_images(0, 1),
                   split=None, num_classes=2)
    with pytest.raises(ConfigError, match="augments RGB images; this dataset's images have 1 channel"):
        check_data(data, FixMatch(validate(Config(algorithm="fixmatch", strong_aug="cta")), 2))


@pytest.mark.parametrize("name", ["fixmatch", "uda"])
def test_one_step_draws_mu_times_the_labeled_batch_and_the_joint_pass_updates_batch_norm(fake_cifar, name):
    """One pass over B + 2μB rows; the first batch norm's running mean moves by momentum × that whole batch's mean
    (--no-warm-averages: the official momentum 0.001 from the first step)."""
    trainer = single_process_trainer(tiny_config(fake_cifar, algorithm=name, uratio=3, warm_averages=False),
                                     tiny_model(1))
    bn = trainer.bn_layers[0]
    seen = []
    bn.register_forward_pre_hook(lambda m, a: seen.append((a[0].detach().clone(), m.track_running_stats)))
    batch = trainer.next_batch()
    assert isinstance(batch, UnlabeledRows) and (len(batch.x), len(batch.weak), len(batch.strong)) == (8, 24, 24)
    before = bn.running_mean.clone()
    trainer.apply_batch(batch)
    tracked = [x for x, tracking in seen if tracking]
    assert len(tracked) == 1 and len(tracked[0]) == 8 + 2 * 24
    expected = before * (1 - bn.momentum) + bn.momentum * tracked[0].float().mean((0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expected, rtol=1e-5, atol=1e-7)


def test_ctaugment_weights_travel_in_the_checkpoint_and_resume_exactly(fake_cifar):
    cfg = tiny_config(fake_cifar, algorithm="fixmatch", strong_aug="cta", uratio=2, accum_steps=2)
    straight, resumed, _ = straight_and_resumed(cfg)
    weights = straight.state_dict()["algorithm"]["cta"]["weights"]
    assert any(not torch.equal(w, torch.ones_like(w)) for ws in weights.values() for w in ws)  # it learned
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        assert torch.equal(a, b)
    cta_a, cta_b = resumed.algorithm.augment.cta.weights, straight.algorithm.augment.cta.weights
    assert all(torch.equal(x, y) for k in cta_a for x, y in zip(cta_a[k], cta_b[k]))


@pytest.mark.parametrize("argv, words", [
    (["--algorithm", "fixmatch", "--uratio", "0"], "--uratio must be at least 1 (got 0)"),
    (["--algorithm", "uda", "--uratio", "-2"], "--uratio must be at least 1 (got -2)"),
    (["--algorithm", "fixmatch", "--strong-aug", "autoaugment"], "argument --strong-aug: invalid choice"),
    (["--algorithm", "fixmatch", "--confidence", "0"], "--confidence must be in (0, 1] (got 0.0)"),
    (["--algorithm", "uda", "--confidence", "1.01"], "--confidence must be in (0, 1] (got 1.01)"),
    (["--algorithm", "uda", "--T", "0"], "--T must be positive (got 0.0)"),
    (["--algorithm", "uda", "--tsa", "cosine"], "argument --tsa: invalid choice"),
    (["--algorithm", "mixmatch", "--uratio", "7"],
     "--uratio is an option of adamatch, dash, fixmatch, flexmatch, freematch, softmatch, uda, not of mixmatch"),
    (["--algorithm", "fixmatch", "--tsa", "linear"], "--tsa is an option of uda, not of fixmatch"),
    (["--algorithm", "fixmatch", "--K", "2"], "--K is an option of mixmatch, remixmatch, not of fixmatch"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv + ["--out", str(tmp_path / "run")], prog="train.py")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_strong_views_do_not_depend_on_the_worker_count():
    """Each image draws from its own seed (run seed, rank, call, position): two worker processes make exactly the
    CTAugment views (with their learned weights) the training process makes alone; the next call makes new ones."""
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    alone, pooled = StrongAugment("cta", seed=3), StrongAugment("cta", seed=3, workers=2)
    for aug in (alone, pooled):
        aug.cta.weights["rotate"][0][:8] = 0.0
    try:
        first = alone(images)
        assert torch.equal(first, pooled(images)) and not torch.equal(first, images)
        assert not torch.equal(alone(images), first) and alone.state_dict()["calls"] == 2
    finally:
        pooled.pool.close()


def test_an_algorithm_with_strong_views_must_make_them(monkeypatch):
    from semisup.algorithms.base import make_algorithm

    monkeypatch.setattr(FixMatch, "strong", None)
    with pytest.raises(TypeError, match="declares strong views but no strong"):
        make_algorithm(validate(Config(algorithm="fixmatch")), 10)
