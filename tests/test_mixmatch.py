"""MixMatch's pure functions against values worked out by hand, and the batch-norm semantics of the passes."""
import copy
import math

import pytest
import torch
import torch.nn as nn

from semisup.batch import Batch, labeled_then_views
from semisup.mixmatch import (
    average_and_sharpen,
    draw_mixup,
    forward_interleaved,
    guess_labels,
    interleave,
    interleave_offsets,
    mix_batch,
    mixup,
    one_hot,
    sharpen,
)
from semisup.models import create_model

from accum_support import backward_in_micro_batches


def bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def tiny(seed=0):
    torch.manual_seed(seed)
    return create_model("wrn-10-tiny")


def test_sharpen_by_hand():
    # [0.6, 0.4] ** 2 = [0.36, 0.16], normalised by 0.52
    torch.testing.assert_close(sharpen(torch.tensor([0.6, 0.4]), 0.5), torch.tensor([0.36, 0.16]) / 0.52)
    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    torch.testing.assert_close(sharpen(p, 1.0), p)
    # T = 1/3: cubes [0.125, 0.027, 0.008] / 0.16
    torch.testing.assert_close(sharpen(p, 1 / 3)[0], torch.tensor([0.125, 0.027, 0.008]) / 0.16)
    torch.testing.assert_close(sharpen(p, 0.5).sum(-1), torch.ones(2))


def test_average_and_sharpen_by_hand():
    # view 1 predicts [0.8, 0.2], view 2 [0.4, 0.6]: mean [0.6, 0.4], sharpened at T = 0.5 -> [0.36, 0.16] / 0.52
    logits = torch.log(torch.tensor([[[0.8, 0.2]], [[0.4, 0.6]]])) + 3.0  # softmax ignores the shift
    torch.testing.assert_close(average_and_sharpen(logits, 0.5), torch.tensor([[0.36, 0.16]]) / 0.52)


@pytest.mark.parametrize("start_training", [False, True])
def test_guess_labels_train_mode_bn_without_touching_running_stats(start_training):
    model = tiny().train(start_training)
    before = bn_state(model)
    torch.manual_seed(1)
    x_ulb = [torch.randn(6, 3, 32, 32, requires_grad=True), torch.randn(6, 3, 32, 32)]
    q = guess_labels(model, x_ulb, T=0.5)
    reference = copy.deepcopy(model).train()  # batch statistics of each view on its own
    with torch.no_grad():
        expected = average_and_sharpen(torch.stack([reference(x) for x in x_ulb]), 0.5)
    torch.testing.assert_close(q, expected)
    assert not q.requires_grad and q.grad_fn is None
    assert model.training is start_training
    after = bn_state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # running mean/var and num_batches_tracked
    with torch.no_grad():
        eval_guess = average_and_sharpen(torch.stack([model.eval()(x) for x in x_ulb]), 0.5)
    assert not torch.allclose(q, eval_guess, atol=1e-3)  # running statistics were not what the guess used


def test_draw_mixup_lambda_and_permutation():
    torch.manual_seed(0)
    lam, perm = draw_mixup(64, 128, alpha=0.75)
    assert lam.shape == (192,) and (lam >= 0.5).all() and (lam <= 1).all()
    assert sorted(perm.tolist()) == list(range(192))
    assert (perm[:64] >= 64).any() and (perm[64:] < 64).any()  # one permutation over both parts
    torch.manual_seed(0)
    # Beta(1, 1) is uniform, so λ' = max(λ, 1-λ) is uniform on [0.5, 1]: mean 0.75, variance 1/48.
    lam = draw_mixup(10000, 10000, alpha=1.0)[0]
    assert lam.mean().item() == pytest.approx(0.75, abs=0.005)
    assert lam.var().item() == pytest.approx(1 / 48, rel=0.05)
    torch.manual_seed(0)
    assert (draw_mixup(100, 100, alpha=1e4)[0] - 0.5).abs().max() < 0.05  # Beta(∞, ∞) is 0.5


def test_draw_mixup_modes():
    n_lb, n_ulb = 8, 16
    draws = {}
    for mode in ("all", "separate", "labeled", "unlabeled", "none"):
        torch.manual_seed(3)
        draws[mode] = draw_mixup(n_lb, n_ulb, 0.75, mode)
    lb, ulb = torch.arange(n_lb), torch.arange(n_lb, n_lb + n_ulb)
    lam, perm = draws["separate"]
    assert (perm[:n_lb] < n_lb).all() and (perm[n_lb:] >= n_lb).all()
    lam, perm = draws["labeled"]
    assert torch.equal(perm[n_lb:], ulb) and (lam[n_lb:] == 1).all() and (lam[:n_lb] < 1).all()
    lam, perm = draws["unlabeled"]
    assert torch.equal(perm[:n_lb], lb) and (lam[:n_lb] == 1).all() and (lam[n_lb:] < 1).all()
    lam, perm = draws["none"]
    assert torch.equal(perm, torch.arange(n_lb + n_ulb)) and (lam == 1).all()
    # λ is drawn for every row in every mode: the mixed rows share the values of "all".
    assert torch.equal(draws["separate"][0], draws["all"][0])
    assert torch.equal(draws["labeled"][0][:n_lb], draws["all"][0][:n_lb])


def test_mixup_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    lam, perm = torch.tensor([0.75, 0.6, 1.0]), torch.tensor([1, 2, 0])
    x_mix, t_mix = mixup(x, t, lam, perm)
    torch.testing.assert_close(x_mix, torch.tensor([[0.75, 0.5], [1.6, 2.8], [4.0, 4.0]]))
    torch.testing.assert_close(t_mix, torch.tensor([[0.75, 0.25], [0.2, 0.8], [0.5, 0.5]]))
    images, _ = mixup(x.view(3, 1, 1, 2), t, lam, perm)  # one λ per image, broadcast over C, H, W
    torch.testing.assert_close(images.view(3, 2), x_mix)


def test_interleave_offsets_as_the_official_code():
    assert interleave_offsets(64, 2) == [0, 21, 42, 64]
    assert interleave_offsets(8, 2) == [0, 2, 5, 8]  # the remainder goes to the last groups
    assert interleave_offsets(9, 2) == [0, 3, 6, 9]
    assert interleave_offsets(10, 1) == [0, 5, 10]


def test_interleave_swaps_slices_and_is_an_involution():
    b = 8  # offsets [0, 2, 5, 8]
    chunks = [torch.arange(b) + 100 * c for c in range(3)]  # chunk 0 labeled rows 0..7, chunks 1, 2 unlabeled
    mixed = interleave(chunks, b)
    assert mixed[0].tolist() == [0, 1, 102, 103, 104, 205, 206, 207]
    assert mixed[1].tolist() == [100, 101, 2, 3, 4, 105, 106, 107]
    assert mixed[2].tolist() == [200, 201, 202, 203, 204, 5, 6, 7]
    for c in mixed:
        assert (c < 100).any() and (c >= 100).any()  # every pass sees labeled and unlabeled rows
    back = interleave(mixed, b)
    assert all(torch.equal(a, c) for a, c in zip(back, chunks))


def test_forward_interleaved_returns_rows_in_input_order():
    torch.manual_seed(0)
    linear = nn.Linear(5, 3)
    x = torch.randn(18, 5)
    torch.testing.assert_close(forward_interleaved(linear, x, 6), linear(x))
    model = tiny().eval()  # eval-mode batch norm is per row, so the interleaving must be invisible
    images = torch.randn(9, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(forward_interleaved(model, images, 3), model(images))


def test_forward_interleaved_only_first_chunk_updates_bn():
    model = tiny().train()
    torch.manual_seed(2)
    x = torch.randn(18, 3, 32, 32) * 2 + 0.5
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference(interleave(list(x.split(6)), 6)[0])
        forward_interleaved(model, x, 6)
    got, want = bn_state(model), bn_state(reference)
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    assert int(got["bn.num_batches_tracked"]) == 1


def test_mix_batch_without_mixup_keeps_rows_and_targets():
    model = tiny()
    torch.manual_seed(4)
    x_lb, y_lb = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 9, 3])
    x_ulb = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    x_mix, t_mix, q = mix_batch(model, x_lb, y_lb, x_ulb, 10, T=0.5, alpha=0.75, mode="none")
    torch.testing.assert_close(q, guess_labels(model, x_ulb, 0.5))
    assert torch.equal(x_mix, torch.cat([x_lb, *x_ulb]))
    torch.testing.assert_close(t_mix, torch.cat([one_hot(y_lb, 10), q, q]))
    x_mix, t_mix, _ = mix_batch(model, x_lb, y_lb, x_ulb, 10, T=0.5, alpha=0.75, mode="all")
    assert x_mix.shape == (12, 3, 32, 32) and t_mix.shape == (12, 10)
    torch.testing.assert_close(t_mix.sum(1), torch.ones(12))


def test_micro_batch_takes_its_share_of_each_part():
    x = torch.arange(12)  # rows: labeled 0..3, view 1: 4..7, view 2: 8..11
    batch = Batch(x, x, 4, 4)
    assert labeled_then_views(batch, 2, 0, 2).x.tolist() == [0, 1, 4, 5, 8, 9]
    assert labeled_then_views(batch, 2, 1, 2).x.tolist() == [2, 3, 6, 7, 10, 11]
    assert torch.equal(labeled_then_views(batch, 2, 0, 1).x, x)


def test_micro_batch_loop_losses_and_accumulated_gradients():
    """With per-row batch norm (eval mode) two micro-batches give the full batch's losses and gradients."""
    model = tiny().eval()
    torch.manual_seed(5)
    x_mix = torch.randn(12, 3, 32, 32)
    t_mix = torch.randn(12, 10).softmax(-1)
    loss_x, loss_u = backward_in_micro_batches(model, x_mix, t_mix, n_lb=4, K=2, lambda_u=3.0)
    full_grads = [p.grad.clone() for p in model.parameters()]
    with torch.no_grad():
        logits = model(x_mix)
    want_x = -(t_mix[:4] * logits[:4].log_softmax(-1)).sum(1).mean()
    want_u = (logits[4:].softmax(-1) - t_mix[4:]).pow(2).mean()
    torch.testing.assert_close(loss_x, want_x)
    torch.testing.assert_close(loss_u, want_u)
    model.zero_grad()
    loss_x2, loss_u2 = backward_in_micro_batches(model, x_mix, t_mix, n_lb=4, K=2, lambda_u=3.0,
                                                accum_steps=2)
    torch.testing.assert_close(loss_x2, loss_x)
    torch.testing.assert_close(loss_u2, loss_u)
    for p, g in zip(model.parameters(), full_grads):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-4)
    assert math.isfinite(loss_x.item()) and not loss_x.requires_grad
