"""Each baseline's loss on fixed inputs against values worked out by hand from the official equations
(google-research/mixmatch: pi_model.py, pseudo_label.py, mixup.py, vat.py + third_party/vat_utils.py,
mean_teacher.py, ict.py, fully_supervised/fs_baseline.py and fs_mixup.py)."""
import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn as nn

from semisup.algorithms.base import Models, Rows, one_hot
from semisup.algorithms.ict import ICT
from semisup.algorithms.mean_teacher import MeanTeacher
from semisup.algorithms.mixup import MixUp
from semisup.algorithms.pi_model import PiModel, consistency_loss
from semisup.algorithms.pseudo_label import pseudo_label_loss
from semisup.algorithms.vat import VAT, adversarial_perturbation, normalize
from semisup.config import Config
from semisup.losses import entropy_sum, kl_sum, mix_reversed


class Linear2(nn.Module):
    """logits = x W^T on 2-value inputs (any leading shape flattened): small enough to work VAT out by hand."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float64))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def test_pi_consistency_is_the_mean_over_batch_and_classes():
    # softmax([0, 0]) = [.5, .5] against q = [1, 0]: (.5² + .5²) = .5; softmax([0, ln 3]) = [.25, .75] against
    # [.5, .5]: 2·.25² = .125; mean over B·C = 4 entries: (.5 + .125) / 4.
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3)]])
    rows = Rows({"u": logits, "q": torch.tensor([[1.0, 0.0], [0.5, 0.5]])}, 2)
    assert consistency_loss(nn.Identity(), rows, nullcontext).item() == pytest.approx(0.625 / 4)


def test_pseudo_label_official_broadcast_and_masked_forms():
    # Row 1 confident (0.96 > 0.95), row 2 not (0.6): CE1 = -ln .96, CE2 = -ln .6.
    logits = torch.tensor([[math.log(0.96), math.log(0.04)], [math.log(0.4), math.log(0.6)]])
    ce1, ce2 = -math.log(0.96), -math.log(0.6)
    # pseudo_label.py:58-61: loss [B] times mask [B, 1] broadcasts to [B, B]; its mean is mean(mask)·mean(CE).
    mask, ce = np.array([[1.0], [0.0]]), np.array([ce1, ce2])
    official = float(np.mean(ce * mask))
    assert official == pytest.approx(0.5 * (ce1 + ce2) / 2)
    assert pseudo_label_loss(logits, 0.95, "official", 2).item() == pytest.approx(official, rel=1e-6)
    assert pseudo_label_loss(logits, 0.95, "masked", 2).item() == pytest.approx(ce1 / 2, rel=1e-6)
    # Under accumulation: the whole batch's confident rate times this micro-batch's CE over the whole batch.
    assert pseudo_label_loss(logits[1:], 0.95, "official", 2, torch.tensor(0.5)).item() == pytest.approx(
        0.5 * ce2 / 2, rel=1e-6)
    assert pseudo_label_loss(logits, 0.99, "official", 2).item() == 0.0  # nobody confident: no loss at all


def test_vat_normalisation_is_max_abs_then_l2():
    v = torch.tensor([[3.0, -4.0]], dtype=torch.float64)
    # v / (1e-12 + 4) = [.75, -1]; / sqrt(1e-6 + .5625 + 1)
    expected = np.array([0.75, -1.0]) / (1 + 1e-12 / 4) / math.sqrt(1e-6 + (0.5625 + 1) / (1 + 1e-12 / 4) ** 2)
    np.testing.assert_allclose(normalize(v).numpy()[0], expected, rtol=1e-12)


def test_vat_power_iteration_by_hand():
    """One power iteration at u = 0 with logits W u: p_clean = softmax(0) = [.5, .5], and for small ξ the gradient
    of KL(p_clean ‖ p(u + d)) is W^T (p(d) - p_clean) ≈ W^T H W d, H = diag(p) - p p^T = [[.25, -.25], [-.25,
    .25]] (the Fisher information). r_adv = ε·N(W^T H W d)."""
    w = np.array([[1.0, 2.0], [-1.0, 0.5]])
    model = Linear2(w)
    u = torch.zeros(1, 2, dtype=torch.float64)
    r = torch.tensor([[0.3, 1.0]], dtype=torch.float64)
    xi, eps = 1e-6, 6.0
    r_adv = adversarial_perturbation(model, u, model(u).detach(), xi, eps, d=r)
    d = xi * normalize(r).numpy()[0]
    h = np.array([[0.25, -0.25], [-0.25, 0.25]])
    g = w.T @ h @ w @ d
    expected = eps * normalize(torch.tensor(g[None])).numpy()[0]
    np.testing.assert_allclose(r_adv.numpy()[0], expected, rtol=1e-5)
    assert np.linalg.norm(expected) == pytest.approx(eps * 1 / math.sqrt(1 + 1e-6 / 1), rel=1e-3)  # |N(v)| ≈ 1
    assert not any(p.grad is not None for p in model.parameters())  # no parameter gradient


def test_vat_loss_directions_and_entropy():
    clean = torch.tensor([[0.0, 0.0]])  # p_clean = [.5, .5]
    adv = torch.tensor([[0.0, math.log(3)]])  # p_adv = [.25, .75]
    reverse = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # vat.py: KL(p_adv ‖ p_clean)
    forward = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # the VAT paper: KL(p_clean ‖ p_adv)
    assert kl_sum(adv, clean).item() == pytest.approx(reverse, rel=1e-6)
    assert kl_sum(clean, adv).item() == pytest.approx(forward, rel=1e-6)
    assert entropy_sum(clean).item() == pytest.approx(math.log(2), rel=1e-6)

    class Table(nn.Module):  # logits looked up by the first pixel: 0 → clean, 1 → adversarial
        def forward(self, x):
            return torch.where(x.flatten(1)[:, :1] > 0.5, adv, clean)

    for kl, expected in (("reverse", reverse), ("forward", forward)):
        vat = VAT(Config(algorithm="vat", vat_kl=kl), 2)
        rows = Rows({"x": torch.zeros(1, 2), "t": torch.tensor([[1.0, 0.0]]), "u": torch.zeros(1, 2),
                     "u_adv": torch.ones(1, 2), "clean": clean}, 1)
        terms = vat.loss(Table(), rows, nullcontext)
        assert terms["u"].item() == pytest.approx(expected, rel=1e-6)
        assert terms["ent"].item() == pytest.approx(math.log(2), rel=1e-6)
        assert terms["x"].item() == pytest.approx(math.log(2), rel=1e-6)
    weights = VAT(Config(algorithm="vat", steps=100, batch_size=4), 2).weights(20 * 4)
    assert weights == {"u": pytest.approx(0.3 * 20 / 40), "ent": 0.06}  # only the VAT term ramps (40 % of 100)


def test_reversed_pairing():
    x = torch.tensor([[1.0], [2.0], [3.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    x_mix, t_mix = mix_reversed(x, t, torch.tensor([0.9, 0.6, 0.7]))
    # x[::-1] = [3, 2, 1]: .9·1 + .1·3, .6·2 + .4·2, .7·3 + .3·1
    torch.testing.assert_close(x_mix, torch.tensor([[1.2], [2.0], [2.4]]))
    torch.testing.assert_close(t_mix, torch.tensor([[0.95, 0.05], [0.0, 1.0], [0.65, 0.35]]))


def _models():
    torch.manual_seed(0)
    live, ema = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    return Models(live, ema)


def _views(n=4, views=2):
    torch.manual_seed(1)
    return torch.randn(n, 4), torch.arange(n) % 3, [torch.randn(n, 4) for _ in range(views)]


def test_ict_mixes_ema_teacher_probabilities_with_the_reversed_batch():
    models = _models()
    x_lb, y_lb, x_ulb = _views(views=1)
    torch.manual_seed(7)
    rows = ICT(Config(algorithm="ict", alpha=0.5), 3).batch(x_lb, y_lb, x_ulb, models)
    torch.manual_seed(7)
    lam = torch.distributions.Beta(0.5, 0.5).sample((4,))
    lam = torch.maximum(lam, 1 - lam)
    p = models.ema(x_ulb[0]).softmax(-1).detach()  # the EMA model, not the live one
    torch.testing.assert_close(rows["q"], lam[:, None] * p + (1 - lam[:, None]) * p.flip(0))
    torch.testing.assert_close(rows["u"], lam[:, None] * x_ulb[0] + (1 - lam[:, None]) * x_ulb[0].flip(0))
    torch.testing.assert_close(rows["x"], x_lb)  # labeled rows are not mixed
    assert not torch.allclose(p, models.live(x_ulb[0]).softmax(-1))


def test_mean_teacher_reads_the_ema_and_pi_model_the_live_model():
    models = _models()
    x_lb, y_lb, x_ulb = _views()
    for cls, name, teacher in ((MeanTeacher, "mean-teacher", models.ema), (PiModel, "pi-model", models.live)):
        rows = cls(Config(algorithm=name), 3).batch(x_lb, y_lb, x_ulb, models)
        torch.testing.assert_close(rows["q"], teacher(x_ulb[0]).softmax(-1).detach())  # view 1: the target
        assert torch.equal(rows["u"], x_ulb[1])  # view 2: the student
        torch.testing.assert_close(rows["t"], one_hot(y_lb, 3))  # --smoothing is 0: as the official run


def test_mixup_mixes_each_set_within_itself_with_independent_draws():
    models = _models()
    x_lb, y_lb, x_ulb = _views(views=1)
    torch.manual_seed(3)
    rows = MixUp(Config(algorithm="mixup", alpha=0.75), 3).batch(x_lb, y_lb, x_ulb, models)
    torch.manual_seed(3)
    beta = torch.distributions.Beta(0.75, 0.75)
    lam_x, lam_u = beta.sample((4,)), beta.sample((4,))
    lam_x, lam_u = torch.maximum(lam_x, 1 - lam_x), torch.maximum(lam_u, 1 - lam_u)
    onehot = one_hot(y_lb, 3)
    torch.testing.assert_close(rows["t"], lam_x[:, None] * onehot + (1 - lam_x[:, None]) * onehot.flip(0))
    q = models.live(x_ulb[0]).softmax(-1).detach()  # the live model's unsharpened guess
    torch.testing.assert_close(rows["q"], lam_u[:, None] * q + (1 - lam_u[:, None]) * q.flip(0))
    assert MixUp(Config(algorithm="mixup"), 3).weights(0) == {}  # no weight, no ramp-up


def test_label_smoothing_of_fs_baseline():
    # (1 - s)·onehot + s/K at s = 0.1, K = 4
    torch.testing.assert_close(one_hot(torch.tensor([2]), 4, 0.1), torch.tensor([[0.025, 0.025, 0.925, 0.025]]))
