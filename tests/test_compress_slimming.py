"""Network slimming and l1-filter: channel choice, and physical removal equal to the masked original."""
import pytest
import torch

from semisup.compress.slimming import branch_scores, plan, select_channels
from semisup.compress.surgery import mask_channels, remove_channels
from semisup.models import create_model, model_from_arch


def random_wrn(seed=0):
    """wrn-10-tiny with random BN parameters and statistics, so that eval mode is not near the identity."""
    torch.manual_seed(seed)
    model = create_model("wrn-10-tiny")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(-1, 1)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("method", ["slim", "l1-filter"])
@pytest.mark.parametrize("residual", [False, True])
def test_removal_equals_masked_original(method, residual):
    model = random_wrn()
    inner, stream = plan(model, method, 0.5, "global", 1, 0.9, residual)
    small = remove_channels(model, inner, stream)
    masked = mask_channels(model, inner, stream)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        out_small, out_masked, out_full = small(x), masked(x), model(x)
    assert torch.allclose(out_small, out_masked, atol=1e-5, rtol=0)
    assert not torch.allclose(out_small, out_full, atol=1e-3)  # something was really removed
    assert small.arch["inner"] == [len(k) for k in inner]
    assert [b.conv1.out_channels for b in small.blocks] == small.arch["inner"]
    if residual:
        assert small.arch["widths"] == [len(k) for k in stream] != model.arch["widths"]
    # the saved shape rebuilds the same network
    rebuilt = model_from_arch("wrn-10-tiny", small.arch).eval()
    rebuilt.load_state_dict(small.state_dict())
    assert torch.equal(rebuilt(x), out_small)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_global_threshold_removes_fraction_and_never_empties():
    # layer 0 has the four lowest scores; without the cap the global threshold would empty it
    scores = [torch.tensor([0.01, 0.02, 0.03, 0.04]),
              torch.tensor([0.5, 0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4]),
              torch.linspace(0.05, 1.0, 16)]
    keep = select_channels(scores, 0.5, "global", max_layer_ratio=0.9)
    removed = [len(s) - len(k) for s, k in zip(scores, keep)]
    assert sum(removed) == round(0.5 * 28) == 14
    assert all(len(k) >= 1 for k in keep)
    # layer 0 is capped at floor(0.9 * 4) = 3; the next 11 lowest scores are 0.05..0.4 in layers 1 and 2:
    # layer 2 holds 0.05, 0.1133, 0.1767, 0.24, 0.3033, 0.3667 (6), layer 1 holds 0.1, 0.2, 0.3, 0.4 (4), and
    # the 11th is layer 2's 0.43
    assert keep[0].tolist() == [3]
    assert keep[1].tolist() == [0, 2, 4, 6]
    assert removed[2] == 7 and keep[2].tolist() == list(range(7, 16))


def test_global_ratio_rounds_and_local_cuts_each_layer():
    scores = [torch.rand(10), torch.rand(6), torch.rand(7)]
    for ratio in (0.1, 0.33, 0.5, 0.75):
        keep = select_channels(scores, ratio, "global")
        assert sum(len(s) - len(k) for s, k in zip(scores, keep)) == round(ratio * 23)
    keep = select_channels(scores, 0.5, "local")
    assert [len(k) for k in keep] == [5, 3, 3]  # 10 - 5, 6 - 3, 7 - round(3.5) = 7 - 4
    lowest = scores[0].argsort()[:5]
    assert set(keep[0].tolist()).isdisjoint(lowest.tolist())


def test_cap_refuses_impossible_ratios():
    scores = [torch.rand(4), torch.rand(4)]
    with pytest.raises(ValueError, match="cap"):
        select_channels(scores, 0.8, "global", max_layer_ratio=0.5)
    with pytest.raises(ValueError, match="cap"):
        select_channels(scores, 0.8, "local", max_layer_ratio=0.5)
    one = [torch.rand(1), torch.rand(8)]
    keep = select_channels(one, 0.5, "global", max_layer_ratio=1.0)
    assert len(keep[0]) == 1  # a single-channel layer is never emptied, even with no fractional cap


def test_l1_filter_ranks_by_the_chosen_norm():
    model = random_wrn()
    conv1 = model.blocks[0].conv1  # 8 filters of shape [4, 3, 3]
    with torch.no_grad():
        conv1.weight.fill_(1.0)
        conv1.weight[0] = 0
        conv1.weight[0, 0, 0, 0] = 30.0  # L1 30, L2 30
        conv1.weight[1] = 0.9  # L1 32.4, L2 5.4
    l1 = branch_scores(model, "l1-filter", 1)[0]
    l2 = branch_scores(model, "l1-filter", 2)[0]
    assert l1[0].item() == pytest.approx(30.0) and l1[1].item() == pytest.approx(32.4)
    assert l2[0].item() == pytest.approx(30.0) and l2[1].item() == pytest.approx(5.4)
    keep1 = select_channels([l1], 1 / 8, "local")[0]
    keep2 = select_channels([l2], 1 / 8, "local")[0]
    assert 0 not in keep1.tolist() and 1 in keep1.tolist()
    assert 1 not in keep2.tolist() and 0 in keep2.tolist()


def test_slim_ranks_by_bn2_gamma():
    model = random_wrn()
    with torch.no_grad():
        model.blocks[1].bn2.weight.copy_(torch.arange(16.0) - 7.5)  # |γ| smallest at channels 7 and 8
    keep = select_channels([branch_scores(model, "slim")[1]], 2 / 16, "local")[0]
    assert 7 not in keep.tolist() and 8 not in keep.tolist() and len(keep) == 14


def test_channel_multiple_rounds_each_layer():
    torch.manual_seed(0)
    scores = [torch.rand(32), torch.rand(64), torch.rand(128), torch.rand(6)]
    exact = select_channels(scores, 0.5, "global")
    keep = select_channels(scores, 0.5, "global", multiple=8)
    for s, e, k in zip(scores[:3], exact, keep):
        assert len(k) % 8 == 0 and abs(len(k) - len(e)) <= 4  # the nearest multiple of 8
        gone = torch.ones(len(s), dtype=torch.bool).index_fill(0, k, False)
        assert s[gone].max() <= s[k].min()  # the highest-scoring channels stay
    assert len(keep[3]) == 6  # a layer narrower than the multiple stays whole
    # 19 kept of 190 is the cap's floor (0.9): rounding to 16 would undercut it, so 24 remain
    capped = select_channels([torch.rand(190), torch.ones(200)], 171 / 390, "global", 0.9, multiple=8)
    assert [len(k) for k in capped] == [24, 200]
