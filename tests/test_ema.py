"""Parameter EMA (closed form after n steps) and decoupled weight decay on conv/linear weights only."""
import pytest
import torch
import torch.nn as nn

from semisup.ema import EMA, apply_weight_decay, bn_momentum_at, decay_parameters, ema_decay_at
from semisup.models import create_model


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 2))


def test_ema_after_n_steps_equals_the_closed_form():
    """ema_n = d^n w0 + (1-d) Σ_{i=1..n} d^(n-i) w_i, starting from the initial weights w0."""
    net, decay, n = small_net(), 0.9, 6
    ema = EMA(net, decay)
    history = [[p.detach().double().clone() for p in net.parameters()]]
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        history.append([p.detach().double().clone() for p in net.parameters()])
        ema.update()
    for j, p_ema in enumerate(ema.model.parameters()):
        closed = decay ** n * history[0][j] + sum((1 - decay) * decay ** (n - i) * history[i][j]
                                                  for i in range(1, n + 1))
        torch.testing.assert_close(p_ema.double(), closed, atol=1e-6, rtol=1e-5)


def test_ema_copies_bn_buffers_and_keeps_no_gradients():
    net = small_net()
    ema = EMA(net, 0.999)
    net.train()(torch.randn(8, 3, 8, 8) * 3 + 1)  # moves the raw model's running statistics
    ema.update()
    bn, bn_ema = net[1], ema.model[1]
    assert torch.equal(bn_ema.running_mean, bn.running_mean) and torch.equal(bn_ema.running_var, bn.running_var)
    assert int(bn_ema.num_batches_tracked) == 1
    assert not bn.running_mean.eq(0).all()
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())
    assert ema.model[0].weight.data_ptr() != net[0].weight.data_ptr()


def test_ema_state_round_trip_keeps_updating_the_same_tensors():
    net = small_net()
    ema = EMA(net, 0.5)
    with torch.no_grad():
        net[3].weight.add_(1.0)
    ema.update()
    other = EMA(small_net(), 0.5)
    other.load_state_dict(ema.state_dict())
    with torch.no_grad():
        net[3].weight.add_(1.0)
    ema.update()
    other._pairs(net)  # follow the same raw model
    other.update()
    assert torch.equal(other.model[3].weight, ema.model[3].weight)


def test_weight_decay_targets_exactly_conv_and_linear_weights():
    model = create_model("wrn-10-tiny")
    chosen = {id(p) for p in decay_parameters(model)}
    names = {n for n, p in model.named_parameters() if id(p) in chosen}
    convs = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert names == convs | {"fc.weight"}
    assert "fc.bias" not in names and not any(".bn" in n or n.startswith("bn.") for n in names)
    assert not chosen & {id(b) for b in model.buffers()}


def test_weight_decay_multiplies_by_one_minus_wd_lr_and_nothing_else():
    model = create_model("wrn-10-tiny")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
                m.running_mean.uniform_(-1, 1)
        model.fc.bias.uniform_(-1, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    decayed = {n for n, p in model.named_parameters() if any(p is q for q in decay_parameters(model))}
    apply_weight_decay(decay_parameters(model), wd=0.02, lr=0.002)  # factor 1 - 4e-5
    for name, value in model.state_dict().items():
        if name in decayed:
            torch.testing.assert_close(value, before[name] * (1 - 0.02 * 0.002), rtol=1e-7, atol=0)
            assert not torch.equal(value, before[name])
        else:
            assert torch.equal(value, before[name]), name
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    apply_weight_decay(decay_parameters(model), wd=0.0, lr=0.002)
    assert all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())


def test_warm_up_rules_by_hand():
    assert [ema_decay_at(t, 0.999) for t in (0, 1, 2, 90)] == [0.1, 2 / 11, 3 / 12, 91 / 100]
    assert ema_decay_at(8989, 0.999) < 0.999 and ema_decay_at(8990, 0.999) == 0.999  # (1+t)/(10+t) >= 0.999
    assert [bn_momentum_at(t, 0.001) for t in (0, 1, 2, 90)] == pytest.approx([0.9, 9 / 11, 9 / 12, 9 / 100])
    assert bn_momentum_at(8989, 0.001) > 0.001 and bn_momentum_at(8990, 0.001) == 0.001  # 9/(10+t) <= 0.001


def _ema(weights, decays):
    e = weights[0]
    for w, d in zip(weights[1:], decays):
        e = d * e + (1 - d) * w
    return e


def test_warm_ema_differs_from_the_official_by_decay_to_the_n_minus_t():
    """Once both rules use the same decay (from update T on), their difference shrinks by exactly decay per
    update: |warm(n) - official(n)| = decay^(n-T) |warm(T) - official(T)| <= decay^(n-T) max|w_i - w_j| (i, j <= T)."""
    torch.manual_seed(0)
    decay, n = 0.9, 200
    weights = torch.randn(n + 1, 5, dtype=torch.float64).cumsum(0)  # a drifting trajectory w_0 ... w_n
    warm = [ema_decay_at(t, decay) for t in range(n)]
    T = next(t for t, d in enumerate(warm) if d == decay)  # 80 for 0.9: (1+t)/(10+t) >= 0.9
    assert T == 80
    official = [decay] * n
    diff_T = _ema(weights[:T + 1], warm[:T]) - _ema(weights[:T + 1], official[:T])
    diff_n = _ema(weights, warm) - _ema(weights, official)
    torch.testing.assert_close(diff_n, decay ** (n - T) * diff_T, rtol=1e-9, atol=1e-12)
    diameter = (weights[:T + 1, None] - weights[None, :T + 1]).abs().amax((0, 1))
    assert (diff_n.abs() <= decay ** (n - T) * diameter).all() and diff_n.abs().max() > 0
