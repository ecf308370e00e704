"""Compression inside the training loop: the slimming penalty and the pruning schedules."""
import pytest
import torch

from semisup.compress.training import install
from semisup.config import Config, ConfigError, validate
from semisup.data import prepare_data
from semisup.engine import Trainer
from semisup.masks import get_masks, prunable_modules, sparsity
from semisup.models import create_model
from semisup.runtime import make_runtime

S = 1e-2


def make_trainer(data_dir, **overrides):
    cfg = validate(Config(data_dir=data_dir, model="wrn-10-tiny", n_labeled=40, n_valid=100, batch_size=8,
                          threads=1, progress=False, amp="none", channels_last="off", steps=20, **overrides))
    data = prepare_data(cfg.data_dir, cfg.n_labeled, cfg.n_valid, cfg.seed)
    torch.manual_seed(cfg.seed)
    trainer = Trainer(cfg, make_runtime(cfg), data, create_model(cfg.model, data.num_classes))
    install(trainer)
    torch.manual_seed(123)
    return trainer


def grads_after_backward(trainer):
    seen = []
    trainer.add_hook("after_backward",
                     lambda t, step: seen.append({n: p.grad.clone() for n, p in t.model.named_parameters()}))
    trainer.train_step()
    assert len(seen) == 1  # after_backward runs once per optimizer step
    return seen[0]


@pytest.mark.parametrize("accum", [1, 2])
def test_slim_penalty_changes_only_gamma_once_per_step(fake_cifar, accum):
    plain = grads_after_backward(make_trainer(fake_cifar, accum_steps=accum))
    trainer = make_trainer(fake_cifar, accum_steps=accum, slim_lambda=S)
    slimmed = grads_after_backward(trainer)
    gammas = {f"{n}.weight" for n, m in trainer.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert gammas
    params = dict(trainer.model.named_parameters())
    for name, grad in plain.items():
        if name in gammas:
            # exactly one S·sign(γ) per optimizer step, however many micro-batches
            expected = grad + S * torch.sign(params[name].detach())
            assert torch.allclose(slimmed[name], expected, atol=1e-7, rtol=0), name
        else:
            assert torch.equal(slimmed[name], grad), name


def test_slim_penalty_moves_gamma_towards_zero(fake_cifar):
    """With the penalty dominating, |γ| shrinks over a few steps (Adam's step size is about lr per step)."""
    trainer = make_trainer(fake_cifar, slim_lambda=10.0)
    bn = trainer.model.blocks[0].bn2
    start = bn.weight.detach().abs().sum().item()
    for _ in range(3):
        trainer.train_step()
    assert bn.weight.detach().abs().sum().item() < start - 2.5 * trainer.cfg.lr * len(bn.weight)


def n_weights(model):
    return sum(m.weight.numel() for _, m in prunable_modules(model))


def test_oneshot_masks_raw_and_ema_at_start(fake_cifar):
    trainer = make_trainer(fake_cifar, prune_schedule="oneshot", prune_start=2, prune_ratio=0.6)
    trainer.train_step()
    assert not get_masks(trainer.model)
    trainer.train_step()  # the second completed step: t = 2
    n = n_weights(trainer.model)
    for model in (trainer.model, trainer.ema.model):
        assert sparsity(model) == pytest.approx(round(0.6 * n) / n)
    trainer.train_step()
    trainer.train_step()
    assert sparsity(trainer.model) == pytest.approx(round(0.6 * n) / n)  # pruned weights stay zero
    assert sparsity(trainer.ema.model) == pytest.approx(round(0.6 * n) / n)


def test_agp_follows_the_cubic_schedule(fake_cifar):
    trainer = make_trainer(fake_cifar, prune_schedule="agp", prune_start=0, prune_end=4, prune_every=2,
                           prune_ratio=0.8, prune_initial=0.0)
    n = n_weights(trainer.model)
    assert sparsity(trainer.model) == 0.0  # s_i = 0 at t0
    trainer.train_step()
    trainer.train_step()  # t = 2: s = 0.8 + (0 - 0.8)(1 - 2/4)^3 = 0.7
    assert sparsity(trainer.model) == pytest.approx(round(0.7 * n) / n)
    trainer.train_step()
    assert sparsity(trainer.model) == pytest.approx(round(0.7 * n) / n)  # no event at t = 3
    trainer.train_step()
    assert sparsity(trainer.model) == pytest.approx(round(0.8 * n) / n)
    assert sparsity(trainer.ema.model) == pytest.approx(round(0.8 * n) / n)


def test_set_keeps_the_count_of_nonzeros(fake_cifar):
    trainer = make_trainer(fake_cifar, prune_schedule="set", prune_start=1, prune_every=2, prune_ratio=0.5,
                           set_zeta=0.3)
    trainer.train_step()  # t = 1: prune to 50 %
    before = get_masks(trainer.model)
    live = sum(int(m.sum()) for m in before.values())
    trainer.train_step()
    trainer.train_step()  # t = 3: drop 30 % of the live weights, regrow as many
    after = get_masks(trainer.model)
    assert sum(int(m.sum()) for m in after.values()) == live
    for key in before:
        assert int(before[key].sum()) == int(after[key].sum())  # per layer too
    # each layer swaps round(0.3 · live) weights, or as many as it had pruned when that is fewer
    swapped = sum(int((before[k] & ~after[k]).sum()) for k in before)
    assert swapped == sum(min(round(0.3 * int(m.sum())), int((~m).sum())) for m in before.values())
    assert swapped > 0
    trainer.train_step()  # the regrown weights (initialised at zero) have trained
    n = n_weights(trainer.model)
    assert sparsity(trainer.model) == pytest.approx((n - live) / n)


def test_iterative_lets_pruned_weights_grow_back(fake_cifar):
    trainer = make_trainer(fake_cifar, prune_schedule="iterative", prune_start=1, prune_every=3, prune_end=4,
                           prune_ratio=0.5)
    trainer.train_step()  # t = 1: zero half of the weights, no mask kept
    n = n_weights(trainer.model)
    assert sparsity(trainer.model) == pytest.approx(round(0.5 * n) / n)
    assert not get_masks(trainer.model)
    trainer.train_step()
    assert sparsity(trainer.model) < 0.1  # they train again
    trainer.train_step()
    trainer.train_step()  # t = 4: the last event leaves the target sparsity
    assert sparsity(trainer.model) == pytest.approx(round(0.5 * n) / n)
    assert sparsity(trainer.ema.model) >= round(0.5 * n) / n


@pytest.mark.parametrize("bad", [dict(prune_ratio=1.0), dict(prune_schedule="agp", prune_initial=0.9),
                                 dict(set_zeta=0.0), dict(prune_every=0),
                                 dict(prune_schedule="oneshot", prune_start=50, steps=10)])
def test_bad_pruning_flags_are_refused(bad):
    with pytest.raises(ConfigError):
        validate(Config(**bad))
