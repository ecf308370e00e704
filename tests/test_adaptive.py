"""FlexMatch, FreeMatch, SoftMatch, AdaMatch and Dash against values worked out by hand from the official
equations, their stop-gradients, the fairness term's exact gradient, and the curriculum's state."""
import math

import pytest
import torch

from semisup.algorithms.adaptive import StepLogits
from semisup.algorithms.dash import Dash
from semisup.algorithms.flexmatch import FlexMatch
from semisup.algorithms.freematch import FreeMatch, fairness_linearised
from semisup.algorithms.thresholds import (
    align,
    convex,
    dash_rho,
    decays_at,
    fairness,
    flexmatch_thresholds,
    learning_effect,
    maxnorm_thresholds,
    mean_and_variance,
    relative_threshold,
    self_loss,
    soft_cross_entropy,
    truncated_gaussian,
    write_marks,
)

from accum_support import tiny_config


def _logits(probs):
    return torch.tensor(probs).log()


def _step(weak, labeled=None, index=None, strong=None, y=None):
    weak = _logits(weak)
    labeled = weak if labeled is None else _logits(labeled)
    y = torch.zeros(len(labeled), dtype=torch.long) if y is None else torch.tensor(y)
    return StepLogits(labeled, y, weak, None if strong is None else _logits(strong),
                      None if index is None else torch.tensor(index))


# ----- FlexMatch ---------------------------------------------------------------------------------------------
def test_flexmatch_warmup_denominator_and_convex_mapping_by_hand():
    marks = torch.tensor([0, 0, 1, -1, -1, -1, -1, -1, -1, -1])  # σ = (2, 1, 0), 7 unused
    beta = learning_effect(marks, 3, torch.zeros(3), warmup=True)
    assert beta.tolist() == pytest.approx([2 / 7, 1 / 7, 0.0])
    # M(2/7) = (2/7)/(12/7) = 1/6, M(1/7) = (1/7)/(13/7) = 1/13
    assert flexmatch_thresholds(beta, 0.95).tolist() == pytest.approx([0.95 / 6, 0.95 / 13, 0.0])
    no_warmup = learning_effect(marks, 3, torch.zeros(3), warmup=False)  # σ / max σ
    assert no_warmup.tolist() == [1.0, 0.5, 0.0]
    assert flexmatch_thresholds(no_warmup, 0.95).tolist() == pytest.approx([0.95, 0.95 / 3, 0.0])
    dominated = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, -1, -1])  # max σ = 6 > 2 unused: the denominator is 6
    assert learning_effect(dominated, 3, torch.zeros(3), True).tolist() == pytest.approx([1.0, 1 / 3, 0.0])
    assert convex(torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]


def test_flexmatch_guard_keeps_beta_while_one_value_fills_every_mark():
    previous = torch.tensor([0.25, 0.5])
    assert torch.equal(learning_effect(torch.full((4,), -1), 2, previous, True), previous)
    assert torch.equal(learning_effect(torch.zeros(4, dtype=torch.long), 2, previous, True), previous)


def test_marks_are_written_only_where_selected_and_the_last_row_wins():
    marks = torch.tensor([-1, 2, -1, -1])
    write_marks(marks, torch.tensor([0, 1, 3, 0, 2]), torch.tensor([1, 0, 1, 2, 0]),
                torch.tensor([True, True, False, True, False]))
    assert marks.tolist() == [2, 0, -1, -1]  # index 0: its last selected row (2); index 1 overwritten; 2, 3 not


def test_flexmatch_starts_open_masks_with_the_previous_beta_then_marks(fake_cifar):
    algorithm = FlexMatch(tiny_config(fake_cifar, algorithm="flexmatch"), 2)
    algorithm.bind_unlabeled(4)
    # step 1: thresholds 0, so even a 0.55 confidence passes; only the 0.96 row (>= τ = 0.95) is marked
    selection = algorithm.select(_step([[0.96, 0.04], [0.45, 0.55]], index=[2, 3]))
    assert selection.weights.tolist() == [1.0, 1.0] and selection.targets.tolist() == [0, 1]
    assert algorithm.marks.tolist() == [-1, -1, 0, -1]
    assert algorithm.beta.tolist() == pytest.approx([1 / 3, 0.0])  # σ(0) = 1 against 3 unused
    # step 2 masks with that β: T(0) = 0.95·(1/3)/(5/3) = 0.19, T(1) = 0
    selection = algorithm.select(_step([[0.18, 0.82], [0.185, 0.815]], index=[0, 1]))
    assert selection.weights.tolist() == [1.0, 1.0]
    selection = algorithm.select(_step([[0.9, 0.1]], index=[1]))
    assert selection.weights.tolist() == [1.0]  # 0.9 >= 0.19
    assert algorithm.step_stats()["class_threshold"].tolist() == pytest.approx([0.19, 0.0])


# ----- FreeMatch ---------------------------------------------------------------------------------------------
def test_freematch_updates_before_masking_by_hand(fake_cifar):
    algorithm = FreeMatch(tiny_config(fake_cifar, algorithm="freematch", ema_p=0.5), 2)
    assert algorithm.tau.item() == pytest.approx(0.5) and algorithm.p_model.tolist() == [0.5, 0.5]
    selection = algorithm.select(_step([[0.6, 0.4], [0.1, 0.9]]))
    # τ = .5·.5 + .5·mean(.6, .9) = .625; p̃ = .5·(.5, .5) + .5·(.35, .65) = (.425, .575); h̃ = (.5, .5)
    assert algorithm.tau.item() == pytest.approx(0.625)
    assert algorithm.p_model.tolist() == pytest.approx([0.425, 0.575])
    assert algorithm.hist.tolist() == pytest.approx([0.5, 0.5])
    thresholds = maxnorm_thresholds(algorithm.tau, algorithm.p_model)
    assert thresholds.tolist() == pytest.approx([0.625 * 0.425 / 0.575, 0.625])
    assert selection.weights.tolist() == [1.0, 1.0]  # 0.6 >= 0.462 (class 0), 0.9 >= 0.625


def test_freematch_fairness_by_hand_its_sign_and_empty_mask():
    p_model, hist = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])
    strong = torch.tensor([[0.8, 0.2], [0.3, 0.7]])  # ĥ = (.5, .5), p̄ = (.55, .45)
    # A = SumNorm(p̃/h̃) = SumNorm(2, 2/3) = (.75, .25); B = SumNorm(p̄/ĥ) = (.55, .45)
    expected = 0.75 * math.log(0.55 + 1e-12) + 0.25 * math.log(0.45 + 1e-12)
    value = fairness(p_model, hist, strong.mean(0), torch.tensor([0.5, 0.5]))
    assert value.item() == pytest.approx(expected) and value.item() < 0
    empty = fairness_linearised(p_model, hist, strong, torch.zeros(2))
    assert empty["fair_value"].item() == 0 and empty["fair_rows"].item() == 0
    # a class no masked row predicts gets weight 0 in B: log(0 + 1e-12) for its A
    one_class = fairness(p_model, hist, torch.tensor([0.7, 0.3]), torch.tensor([1.0, 0.0]))
    assert one_class.item() == pytest.approx(0.25 * math.log(1e-12), rel=1e-6)


def test_fairness_linearised_gradient_equals_autograd_of_the_term():
    torch.manual_seed(0)
    logits = torch.randn(6, 3, requires_grad=True)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    p_model, hist = torch.tensor([0.2, 0.3, 0.5]), torch.tensor([0.3, 0.3, 0.4])
    probs = logits.softmax(-1)
    rows = probs[mask.bool()]
    direct = fairness(p_model, hist, rows.mean(0), torch.bincount(rows.argmax(-1), minlength=3).float() / 4)
    grad_direct, = torch.autograd.grad(direct, logits)
    extra = fairness_linearised(p_model, hist, probs.detach(), mask)
    linear = (extra["fair_grad"] * (logits.softmax(-1) * mask[:, None]).sum(0)).sum() / extra["fair_rows"]
    grad_linear, = torch.autograd.grad(linear, logits)
    assert extra["fair_value"].item() == pytest.approx(direct.item())
    torch.testing.assert_close(grad_linear, grad_direct)
    assert grad_direct.abs().max() > 1e-4


# ----- SoftMatch, AdaMatch -----------------------------------------------------------------------------------
def test_softmatch_weight_at_above_and_below_the_mean():
    conf = torch.tensor([0.5, 0.9, 0.3])
    weights = truncated_gaussian(conf, mu=0.5, var=0.04, n_sigma=2.0)
    # below: exp(−(0.3 − 0.5)² / (2·0.04/4)) = exp(−2)
    assert weights.tolist() == pytest.approx([1.0, 1.0, math.exp(-2)])


def test_softmatch_statistics_and_alignment_by_hand():
    mu, var = mean_and_variance(0.1, 1.0, torch.tensor([0.2, 0.6]), 0.9)  # mean 0.4, unbiased variance 0.08
    assert (mu, var) == pytest.approx((0.9 * 0.1 + 0.1 * 0.4, 0.9 * 1.0 + 0.1 * 0.08))
    aligned = align(torch.tensor([[0.5, 0.5]]), torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75]), eps=0.0)
    assert aligned.tolist()[0] == pytest.approx([0.75, 0.25])
    with_eps = align(torch.tensor([[0.5, 0.5]]), torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75]))
    ratio = (0.5 + 1e-6) / (0.25 + 1e-6), (0.5 + 1e-6) / (0.75 + 1e-6)
    assert with_eps.tolist()[0] == pytest.approx([ratio[0] / sum(ratio), ratio[1] / sum(ratio)], rel=1e-6)


@pytest.mark.parametrize("variant", ["torchssl", "usb"])
def test_softmatch_select_uses_raw_labels_and_the_variants_statistics(fake_cifar, variant):
    from semisup.algorithms.softmatch import SoftMatch

    algorithm = SoftMatch(tiny_config(fake_cifar, algorithm="softmatch", ema_p=0.5, softmatch_variant=variant), 2)
    weak, labeled = [[0.7, 0.3], [0.4, 0.6]], [[0.9, 0.1], [0.9, 0.1]]
    selection = algorithm.select(_step(weak, labeled))
    assert selection.targets.tolist() == [0, 1]  # argmax of the raw weak softmax
    raw_conf = torch.tensor([0.7, 0.6])
    if variant == "torchssl":  # statistics of the raw confidences; labeled EMA target, model EMA from 1/C
        assert algorithm.mu == pytest.approx(0.5 * 0.5 + 0.5 * 0.65)
        assert algorithm.p_target.tolist() == pytest.approx([0.7, 0.3])
        assert algorithm.p_model.tolist() == pytest.approx([0.525, 0.475])
        aligned = align(torch.tensor(weak), torch.tensor([0.7, 0.3]), torch.tensor([0.525, 0.475]), eps=0.0)
    else:  # uniform target, the first batch's mean as the model distribution, statistics of the aligned ones
        assert algorithm.p_target.tolist() == [0.5, 0.5]
        assert algorithm.p_model.tolist() == pytest.approx([0.55, 0.45])
        aligned = align(torch.tensor(weak), torch.tensor([0.5, 0.5]), torch.tensor([0.55, 0.45]))
        assert algorithm.mu == pytest.approx(0.25 + 0.5 * aligned.max(-1).values.mean().item())
    expected = truncated_gaussian(aligned.max(-1).values, algorithm.mu, algorithm.var, 2.0)
    torch.testing.assert_close(selection.weights, expected)
    assert not torch.equal(aligned.max(-1).values, raw_conf)


def test_adamatch_relative_threshold_and_aligned_labels(fake_cifar):
    from semisup.algorithms.adamatch import AdaMatch

    assert relative_threshold(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), 0.95).item() == pytest.approx(0.76)
    algorithm = AdaMatch(tiny_config(fake_cifar, algorithm="adamatch", ema_p=0.5), 2)
    selection = algorithm.select(_step([[0.8, 0.2], [0.5, 0.5]], labeled=[[0.9, 0.1], [0.3, 0.7]]))
    # p_model = first mean (.65, .35); p_target = .5·(.5, .5) + .5·(.6, .4) = (.55, .45)
    aligned = align(torch.tensor([[0.8, 0.2], [0.5, 0.5]]), torch.tensor([0.55, 0.45]), torch.tensor([0.65, 0.35]))
    assert selection.targets.tolist() == aligned.argmax(-1).tolist()
    assert selection.weights.tolist() == (aligned.max(-1).values >= 0.76).float().tolist()
    assert algorithm.step_stats()["threshold"].item() == pytest.approx(0.76)


# ----- Dash --------------------------------------------------------------------------------------------------
def test_dash_schedule_by_hand():
    assert dash_rho(2.0, 0, 1.27, 1.0001, 0.05) == pytest.approx(1.0001 * 2.0)
    assert dash_rho(2.0, 3, 1.27, 1.0001, 0.05) == pytest.approx(1.0001 * 2.0 / 1.27 ** 3)
    assert dash_rho(2.0, 40, 1.27, 1.0001, 0.05) == 0.05
    assert [decays_at(s, 10, 5) for s in (0, 10, 14, 15, 21)] == [0, 0, 0, 1, 2]


def test_dash_warmup_soft_then_hard_targets(fake_cifar):
    cfg = tiny_config(fake_cifar, algorithm="dash", dash_warmup=2, dash_every=1, rho_min=0.3, steps=10)
    algorithm = Dash(cfg, 2)
    assert algorithm.weights(0)["u"] == 0 and algorithm.weights(2 * cfg.batch_size)["u"] == 1.0
    algorithm.start_step(0, None)
    labeled = [[0.5, 0.5], [0.25, 0.75]]
    selection = algorithm.select(_step([[0.9, 0.1]], labeled=labeled, y=[0, 1]))
    assert selection.weights.tolist() == [0.0]  # warm-up
    assert algorithm.rho_init == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, rel=1e-6)
    algorithm.start_step(2, None)  # ρ = C·ρ̂ > ρ_min: soft targets softmax(w/T), mask on the weak view's own loss
    weak = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
    selection = algorithm.select(_step(weak.tolist(), labeled=labeled, y=[0, 1]))
    soft = (weak.log() / 0.5).softmax(-1)
    torch.testing.assert_close(selection.targets, soft)
    rho = 1.0001 * algorithm.rho_init
    assert selection.weights.tolist() == (self_loss(weak.log(), soft) <= rho).float().tolist()
    algorithm.start_step(9, None)  # 7 decays: at ρ_min, hard targets
    selection = algorithm.select(_step(weak.tolist(), labeled=labeled, y=[0, 1]))
    assert selection.targets.dtype == torch.long and selection.targets.tolist() == [0, 0]
    assert algorithm.step_stats()["threshold"].item() == pytest.approx(0.3)


# ----- what every method shares ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["flexmatch", "freematch", "softmatch", "adamatch", "dash"])
def test_targets_and_weights_carry_no_gradient(fake_cifar, name):
    from semisup import algorithms

    cfg = tiny_config(fake_cifar, algorithm=name, **({"dash_warmup": 0} if name == "dash" else {}))
    algorithm = algorithms.load(name)(cfg, 3)
    algorithm.bind_unlabeled(8)
    logits_x, logits_w, logits_s = (torch.randn(4, 3, requires_grad=True) for _ in range(3))
    selection = algorithm.select_step(logits_x, torch.arange(4) % 3, logits_w, logits_s, torch.arange(4))
    assert not selection.targets.requires_grad and not selection.weights.requires_grad
    loss = (soft_cross_entropy(logits_s, selection.targets) * selection.weights).sum()
    if name == "freematch":  # the fairness term: its gradient reaches the strong logits only
        from semisup.algorithms.adaptive import AdaptiveRows

        rows = AdaptiveRows(logits_x, None, logits_w, logits_s, 4, 4)
        loss = loss + algorithm.extra_terms(logits_s, selection, rows)["fair"]
    loss.backward()
    assert logits_w.grad is None and logits_x.grad is None and logits_s.grad is not None


@pytest.mark.parametrize("name, key", [("flexmatch", "beta"), ("freematch", "p_model"), ("softmatch", "p_target"),
                                       ("adamatch", "p_target")])
def test_a_saved_curriculum_of_another_class_count_is_refused(fake_cifar, name, key):
    from semisup import algorithms

    algorithm = algorithms.load(name)(tiny_config(fake_cifar, algorithm=name), 10)
    algorithm.bind_unlabeled(8)
    state = algorithm.state_dict()
    state[key] = torch.zeros(100)
    with pytest.raises(ValueError, match=f"{name}'s .* count 100 classes, this run's data has 10"):
        algorithm.load_state_dict(state)
