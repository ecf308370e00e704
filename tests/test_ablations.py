"""Each Table 4 switch of train.py does what it says: --K, --T/--no-sharpen, --ema-guess, --mixup, and ICT.

Guesses are checked against values worked out by hand: a model whose classifier has zero weights and bias b
outputs softmax(b) for every image, so its guess is softmax(b) (no sharpening) or softmax(b)**2 renormalised
(T = 0.5), whatever the augmented views.
"""
import math

import pytest
import torch

from semisup import engine
from semisup.algorithms import mixmatch as mixmatch_algorithm
from semisup.config import Config, parse_args
from semisup.data import prepare_data
from semisup.mixmatch import average_and_sharpen, draw_mixup, mix_batch, mixup, sharpen
from semisup.models import create_model
from semisup.runtime import Runtime

N_LB, N_ULB = 6, 12

# A model outputting these probabilities for every image: 0.05 on nine classes and 0.55 on one.
P_EMA = [0.05] * 9 + [0.55]
P_RAW = [0.55] + [0.05] * 9
# The same sharpened with T = 0.5: 0.05² / (9·0.05² + 0.55²) = 0.0025 / 0.325, and 0.3025 / 0.325.
P_EMA_SHARP = [0.0025 / 0.325] * 9 + [0.3025 / 0.325]
P_RAW_SHARP = [0.3025 / 0.325] + [0.0025 / 0.325] * 9


def constant_output(model: torch.nn.Module, probs) -> None:
    """Make ``model`` predict ``probs`` for every input (zero classifier weights, bias = log probs)."""
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor(probs).log())


@pytest.fixture(scope="module")
def data(fake_cifar):
    return prepare_data(fake_cifar, 40, 100, seed=1)


def make_trainer(data, fake_cifar, argv=()):
    cfg = parse_args(["--data-dir", fake_cifar, "--model", "wrn-10-tiny", "--n-labeled", "40", "--n-valid", "100",
                      "--batch-size", "8", "--amp", "none", "--device", "cpu", *argv])
    torch.manual_seed(0)
    rt = Runtime(device=torch.device("cpu"), amp_dtype=None, memory_format=torch.contiguous_format)
    trainer = engine.Trainer(cfg, rt, data, create_model(cfg.model, data.num_classes))
    constant_output(trainer.model, P_RAW)
    constant_output(trainer.ema.model, P_EMA)
    return trainer


@pytest.fixture
def recorded(monkeypatch):
    """Record the arguments and results of every mix_batch call made by Trainer.train_step."""
    calls = []

    def recorder(guess_model, x_lb, y_lb, x_ulb, *args):
        x_mix, t_mix, q = mix_batch(guess_model, x_lb, y_lb, x_ulb, *args)
        calls.append({"x": torch.cat([x_lb, *x_ulb]), "y_lb": y_lb, "K": len(x_ulb),
                      "x_mix": x_mix, "t_mix": t_mix, "q": q})
        return x_mix, t_mix, q

    monkeypatch.setattr(mixmatch_algorithm, "mix_batch", recorder)
    return calls


def step_and_record(trainer, recorded) -> dict:
    trainer.train_step()
    assert len(recorded) == 1
    return recorded[0]


# ----- sharpening -------------------------------------------------------------------------------------------
def test_sharpen_by_hand():
    p = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    # T = 0.5: squares 0.04, 0.64 → 0.04/0.68, 0.64/0.68; a uniform row stays uniform.
    expected = torch.tensor([[0.04 / 0.68, 0.64 / 0.68], [0.5, 0.5]])
    assert torch.allclose(sharpen(p, 0.5), expected)
    # T = 0.25: fourth powers 0.0016, 0.4096.
    assert torch.allclose(sharpen(p, 0.25)[0], torch.tensor([0.0016, 0.4096]) / 0.4112)
    assert torch.equal(sharpen(p, 1.0), p)


def test_guess_without_sharpening_is_the_plain_average():
    # Two views with softmax [0.2, 0.8] and [0.6, 0.4]: the average is [0.4, 0.6].
    logits = torch.tensor([[[0.2, 0.8]], [[0.6, 0.4]]]).log()
    assert torch.allclose(average_and_sharpen(logits, 1.0), torch.tensor([[0.4, 0.6]]))
    # Sharpened (T = 0.5) it would be [0.16, 0.36] / 0.52 instead.
    assert torch.allclose(average_and_sharpen(logits, 0.5), torch.tensor([[0.16 / 0.52, 0.36 / 0.52]]))


def test_no_sharpen_overrides_T():
    assert parse_args(["--no-sharpen"]).temperature == 1.0
    assert parse_args(["--no-sharpen", "--T", "0.3"]).temperature == 1.0
    assert parse_args(["--T", "0.3"]).temperature == 0.3
    assert Config().temperature == 0.5


def test_train_step_guess_without_sharpening(data, fake_cifar, recorded):
    call = step_and_record(make_trainer(data, fake_cifar, ["--no-sharpen"]), recorded)
    assert torch.allclose(call["q"], torch.tensor(P_RAW).expand(8, 10), atol=1e-6)


def test_train_step_guess_sharpened_by_default(data, fake_cifar, recorded):
    call = step_and_record(make_trainer(data, fake_cifar), recorded)
    assert torch.allclose(call["q"], torch.tensor(P_RAW_SHARP).expand(8, 10), atol=1e-6)


# ----- EMA guess --------------------------------------------------------------------------------------------
def test_ema_guess_uses_the_ema_weights(data, fake_cifar, recorded):
    call = step_and_record(make_trainer(data, fake_cifar, ["--ema-guess"]), recorded)
    assert torch.allclose(call["q"], torch.tensor(P_EMA_SHARP).expand(8, 10), atol=1e-6)
    assert call["q"].argmax(1).eq(9).all()  # the raw model would have guessed class 0


def test_ema_guess_leaves_the_ema_model_in_eval_mode(data, fake_cifar, recorded):
    trainer = make_trainer(data, fake_cifar, ["--ema-guess"])
    step_and_record(trainer, recorded)
    assert not trainer.ema.model.training


# ----- K ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("K", [1, 3])
def test_K_views_per_unlabeled_image(data, fake_cifar, recorded, K):
    call = step_and_record(make_trainer(data, fake_cifar, ["--K", str(K)]), recorded)
    assert call["K"] == K
    assert call["x"].shape[0] == call["x_mix"].shape[0] == 8 * (1 + K)
    assert call["q"].shape == (8, 10)  # one guess per unlabeled image, averaged over its K views


# ----- MixUp modes (pure functions) -------------------------------------------------------------------------
def identity_mix(mode: str, seed: int):
    """Mix the identity matrix: row i of the result is λ_i·e_i + (1−λ_i)·e_perm(i), so it shows the partner."""
    torch.manual_seed(seed)
    n = N_LB + N_ULB
    lam, perm = draw_mixup(N_LB, N_ULB, 0.75, mode)
    eye = torch.eye(n)
    x_mix, t_mix = mixup(eye, eye.clone(), lam, perm)
    return eye, x_mix, t_mix, lam, perm


SEEDS = range(20)


@pytest.mark.parametrize("seed", SEEDS)
def test_mixup_none_passes_inputs_and_targets_unchanged(seed):
    eye, x_mix, t_mix, lam, perm = identity_mix("none", seed)
    assert torch.equal(x_mix, eye) and torch.equal(t_mix, eye)
    assert torch.equal(lam, torch.ones(N_LB + N_ULB)) and torch.equal(perm, torch.arange(N_LB + N_ULB))


@pytest.mark.parametrize("seed", SEEDS)
def test_mixup_labeled_leaves_unlabeled_rows_untouched(seed):
    eye, x_mix, t_mix, _, perm = identity_mix("labeled", seed)
    assert torch.equal(x_mix[N_LB:], eye[N_LB:]) and torch.equal(t_mix[N_LB:], eye[N_LB:])
    assert (perm[:N_LB] < N_LB).all()  # labeled rows mix with labeled rows only
    assert x_mix[:N_LB, N_LB:].abs().sum() == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_mixup_unlabeled_leaves_labeled_rows_untouched(seed):
    eye, x_mix, t_mix, _, perm = identity_mix("unlabeled", seed)
    assert torch.equal(x_mix[:N_LB], eye[:N_LB]) and torch.equal(t_mix[:N_LB], eye[:N_LB])
    assert (perm[N_LB:] >= N_LB).all()
    assert x_mix[N_LB:, :N_LB].abs().sum() == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_mixup_separate_never_mixes_labeled_with_unlabeled(seed):
    _, x_mix, t_mix, lam, perm = identity_mix("separate", seed)
    assert x_mix[:N_LB, N_LB:].abs().sum() == 0 and x_mix[N_LB:, :N_LB].abs().sum() == 0
    assert t_mix[:N_LB, N_LB:].abs().sum() == 0 and t_mix[N_LB:, :N_LB].abs().sum() == 0
    assert (lam >= 0.5).all() and (lam <= 1).all()


def test_mixup_all_and_separate_do_mix():
    """Contrast for the tests above: ``all`` crosses the labeled/unlabeled boundary, ``separate`` mixes inside."""
    crossed = [identity_mix("all", s)[1][:N_LB, N_LB:].sum().item() > 0 for s in SEEDS]
    assert any(crossed)
    _, x_mix, _, lam, perm = identity_mix("separate", 0)
    moved = perm != torch.arange(N_LB + N_ULB)
    assert moved[:N_LB].any() and moved[N_LB:].any()
    rows = torch.arange(N_LB + N_ULB)[moved]
    assert torch.allclose(x_mix[rows, rows], lam[moved])  # a moved row keeps λ' of itself ...
    assert torch.allclose(x_mix[rows, perm[moved]], 1 - lam[moved])  # ... and takes 1-λ' of its partner


# ----- MixUp modes through mix_batch with a model -----------------------------------------------------------
def batch(K=2, B=4):
    g = torch.Generator().manual_seed(3)
    x_lb = torch.randn(B, 3, 32, 32, generator=g)
    x_ulb = [torch.randn(B, 3, 32, 32, generator=g) for _ in range(K)]
    return x_lb, torch.tensor([0, 1, 2, 3])[:B], x_ulb


def test_mix_batch_none_returns_the_unmixed_batch():
    model = create_model("wrn-10-tiny")
    constant_output(model, P_RAW)
    x_lb, y_lb, x_ulb = batch()
    x_mix, t_mix, q = mix_batch(model, x_lb, y_lb, x_ulb, 10, 0.5, 0.75, "none")
    assert torch.equal(x_mix, torch.cat([x_lb, *x_ulb]))
    q_hand = torch.tensor(P_RAW_SHARP).expand(4, 10)
    assert torch.allclose(q, q_hand, atol=1e-6)
    assert torch.equal(t_mix, torch.cat([torch.eye(10)[y_lb], q, q]))


def test_mix_batch_labeled_keeps_unlabeled_rows_and_guesses():
    model = create_model("wrn-10-tiny")
    x_lb, y_lb, x_ulb = batch()
    torch.manual_seed(1)
    x_mix, t_mix, q = mix_batch(model, x_lb, y_lb, x_ulb, 10, 0.5, 0.75, "labeled")
    assert torch.equal(x_mix[4:], torch.cat(x_ulb)) and torch.equal(t_mix[4:], q.repeat(2, 1))
    assert not torch.equal(x_mix[:4], x_lb)
    assert torch.allclose(t_mix[:4].sum(1), torch.ones(4))  # still distributions, over the labeled classes only
    assert t_mix[:4, 4:].abs().sum() == 0


# ----- ICT ----------------------------------------------------------------------------------------------------
def test_unlabeled_mixup_without_sharpening_with_ema_guess(data, fake_cifar, recorded):
    argv = ["--mixup", "unlabeled", "--no-sharpen", "--ema-guess"]
    cfg = parse_args(argv)
    assert (cfg.mixup, cfg.temperature, cfg.ema_guess) == ("unlabeled", 1.0, True)
    call = step_and_record(make_trainer(data, fake_cifar, argv), recorded)
    assert torch.allclose(call["q"], torch.tensor(P_EMA).expand(8, 10), atol=1e-6)  # EMA, not sharpened
    x, x_mix, t_mix = call["x"], call["x_mix"], call["t_mix"]
    assert torch.equal(x_mix[:8], x[:8])  # labeled rows pass unchanged ...
    assert torch.equal(t_mix[:8], torch.eye(10)[call["y_lb"]])
    assert not torch.equal(x_mix[8:], x[8:])  # ... unlabeled rows are mixed
    assert math.isclose(t_mix[8:].sum().item(), 16.0, rel_tol=1e-5)
