"""Unstructured pruning math: masks from scores, Taylor importance, AGP, SET."""
import pytest
import torch
import torch.nn as nn

from semisup.compress.unstructured import (
    agp_sparsity,
    magnitude_scores,
    masks_from_scores,
    set_drop_regrow,
    taylor_scores,
)
from semisup.masks import set_masks, sparsity
from semisup.models import create_model


def test_masks_from_scores_global_and_local():
    scores = {"a.weight": torch.tensor([1.0, 5.0, 3.0, 7.0]), "b.weight": torch.tensor([2.0, 8.0, 4.0, 6.0])}
    glob = masks_from_scores(scores, 0.5, "global")  # the four smallest overall: 1, 2, 3, 4
    assert glob["a.weight"].tolist() == [False, True, False, True]
    assert glob["b.weight"].tolist() == [False, True, False, True]
    local = masks_from_scores(scores, 0.25, "local")  # one per layer
    assert local["a.weight"].tolist() == [False, True, True, True]
    assert local["b.weight"].tolist() == [False, True, True, True]
    skewed = {"a.weight": torch.tensor([1.0, 2.0]), "b.weight": torch.tensor([10.0, 20.0, 30.0, 40.0])}
    assert masks_from_scores(skewed, 0.5, "global")["a.weight"].tolist() == [False, False]  # global may empty


@pytest.mark.parametrize("scope", ["global", "local"])
def test_magnitude_reaches_the_target_and_prunes_the_smallest(scope):
    torch.manual_seed(0)
    model = create_model("wrn-10-tiny")
    masks = masks_from_scores(magnitude_scores(model), 0.7, scope)
    set_masks(model, masks)
    n = sum(m.numel() for m in masks.values())
    if scope == "global":
        assert sparsity(model) == pytest.approx(round(0.7 * n) / n)
        kept_min = min(model.get_submodule(k[:-7]).weight[m].abs().min() for k, m in masks.items() if m.any())
        gone_max = max(model.get_submodule(k[:-7]).weight_orig[~m].abs().max() for k, m in masks.items())
        assert gone_max <= kept_min
    else:
        for mask in masks.values():
            assert int((~mask).sum()) == round(0.7 * mask.numel())


def test_taylor_is_weight_times_mean_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    xs = [torch.randn(4, 3) for _ in range(3)]
    ys = [torch.randint(0, 2, (4,)) for _ in range(3)]

    def loss_fn(m, i):
        return nn.functional.cross_entropy(m(xs[i]), ys[i])

    scores = taylor_scores(model, loss_fn, 3)
    w = model[0].weight
    grads = [torch.autograd.grad(loss_fn(model, i), w)[0] for i in range(3)]
    expected = (w.detach() * sum(grads) / 3).abs()
    assert torch.allclose(scores["0.weight"], expected, atol=1e-7)
    assert model[0].weight.grad is None  # leaves no gradients behind


def test_agp_start_middle_end():
    s_i, s_f, t0, t_end = 0.1, 0.9, 100, 500
    assert agp_sparsity(50, s_i, s_f, t0, t_end) == s_i
    assert agp_sparsity(100, s_i, s_f, t0, t_end) == pytest.approx(0.1)
    # middle: 0.9 + (0.1 - 0.9)(1 - 200/400)^3 = 0.9 - 0.8/8 = 0.8
    assert agp_sparsity(300, s_i, s_f, t0, t_end) == pytest.approx(0.8)
    # a quarter in: 0.9 - 0.8 * 0.75^3 = 0.5625
    assert agp_sparsity(200, s_i, s_f, t0, t_end) == pytest.approx(0.5625)
    assert agp_sparsity(500, s_i, s_f, t0, t_end) == pytest.approx(0.9)
    assert agp_sparsity(900, s_i, s_f, t0, t_end) == pytest.approx(0.9)


def test_set_drop_regrow_swaps_the_weakest_for_random_pruned():
    score = torch.tensor([0.0, 5.0, 1.0, 0.0, 4.0, 2.0, 0.0, 3.0, 0.0, 6.0])
    mask = score > 0  # 6 live, 4 pruned
    new, grown = set_drop_regrow(score, mask, 0.34, torch.Generator().manual_seed(0))
    assert int(new.sum()) == int(mask.sum()) == 6
    # round(0.34 * 6) = 2 dropped: the two smallest live scores (1.0 at 2, 2.0 at 5)
    assert not new[2] and not new[5]
    assert int(grown.sum()) == 2 and not (grown & mask).any()  # regrown where it was pruned before
    assert torch.equal(new, (mask & ~torch.tensor([i in (2, 5) for i in range(10)])) | grown)


def test_set_falls_back_on_dropped_positions_when_few_are_pruned():
    score = torch.arange(1.0, 11.0)
    mask = torch.ones(10, dtype=torch.bool)
    mask[0] = False  # one pruned, three to drop
    new, grown = set_drop_regrow(score, mask, 0.3, torch.Generator().manual_seed(0))
    assert int(new.sum()) == 9 and int(grown.sum()) == 3 and grown[0]


@pytest.mark.parametrize("scope", ["local", "global"])
def test_masks_of_channels_last_scores_equal_the_contiguous_ones(scope):
    """train.py runs on the CPU in channels-last: the weights' scores come in that layout."""
    torch.manual_seed(0)
    scores = {"conv.weight": torch.rand(8, 4, 3, 3), "fc.weight": torch.rand(10, 8)}
    last = {k: s.to(memory_format=torch.channels_last) if s.dim() == 4 else s for k, s in scores.items()}
    assert not last["conv.weight"].is_contiguous()
    for key, mask in masks_from_scores(last, 0.3, scope).items():
        assert torch.equal(mask, masks_from_scores(scores, 0.3, scope)[key])
