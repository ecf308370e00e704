"""The contract every registered algorithm keeps with the Trainer (``semisup/algorithms/base.py``).

Parametrized over ``semisup.algorithms.NAMES``, so a new algorithm file is held to it the day it is added:
gradient accumulation equals one full batch, the batch-norm statistics advance once per optimizer step and only
from one pass of the first micro-batch (the labeled one; FixMatch's joint one; ReMixMatch's last mixed one), a
resumed run continues exactly, and the Taylor criterion scores with the algorithm's own weighted loss.
"""
import pytest
import torch

from semisup import algorithms
from semisup.algorithms.base import Rows
from semisup.algorithms.remixmatch import ReMixMatchRows
from semisup.compress import taylor
from semisup.data import prepare_data
from semisup.mixmatch import interleave

from accum_support import single_process_trainer, straight_and_resumed, tiny_config, tiny_model

NAMES = algorithms.NAMES


def _config(data_dir, name, **overrides):
    options = algorithms.SPECS[name].options
    ramp = {"rampup_steps": 1} if "rampup_steps" in options else {}
    if "dash_warmup" in options:  # Dash past its warm-up after one step, ρ decaying at every step
        ramp.update(dash_warmup=1, dash_every=1)
    return tiny_config(data_dir, algorithm=name, **{**ramp, **overrides})


def _flat_grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("name", NAMES)
def test_accum_4_equals_one_full_batch(fake_cifar, name):
    """Gradients, weights, EMA and every loss term after one step at --accum-steps 4 and 1 (batch-norm-free model:
    the one documented difference, per-micro-batch statistics, is taken out)."""
    out = {}
    for accum in (1, 4):
        trainer = single_process_trainer(_config(fake_cifar, name, accum_steps=accum), tiny_model(1, bn=False))
        trainer.step = 1  # every ramp at its full weight (--rampup-steps 1)
        terms, weights = trainer.train_step()
        out[accum] = (_flat_grads(trainer.model), [p.detach().clone() for p in trainer.model.parameters()],
                      [p.detach().clone() for p in trainer.ema.model.parameters()], terms, weights)
    (g1, p1, e1, t1, w1), (g4, p4, e4, t4, w4) = out[1], out[4]
    assert set(t1) == set(algorithms.load(name).terms) and w1 == w4
    assert g1.abs().max() > 1e-3  # a real gradient
    torch.testing.assert_close(g4, g1, rtol=0, atol=1e-5)
    for key in t1:
        torch.testing.assert_close(t4[key], t1[key], rtol=0, atol=1e-5)
    for a, b in zip(p4 + e4, p1 + e1):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


class _PassRecorder:
    """Records, for every forward pass of the whole network, its input and whether batch norm tracked it."""

    def __init__(self, model):
        self.bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        self.calls = []
        model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if module.training and torch.is_grad_enabled():
            self.calls.append((args[0].detach().clone(), self.bn.track_running_stats))


def _tracked_pass_rows(batch, accum: int) -> torch.Tensor:
    """The rows of micro-batch 0's pass that updates the statistics: the first, labeled one; or (FixMatch, UDA: one
    joint pass) the labeled, weak and strong ones together; or (ReMixMatch) the last interleaved mixed chunk."""
    if isinstance(batch, Rows):
        return batch["x"][:len(batch["x"]) // accum]
    first = batch.part(0, accum)
    if isinstance(batch, ReMixMatchRows):
        return interleave(list(first.mixed.x.split(first.mixed.n_lb)), first.mixed.n_lb)[-1]
    return torch.cat([first.x, first.weak, first.strong])


@pytest.mark.parametrize("accum", [1, 4])
@pytest.mark.parametrize("name", [n for n in NAMES if n != "mixmatch"])  # MixMatch's: tests/test_fast_path.py
def test_bn_statistics_advance_once_per_step_from_one_pass(fake_cifar, name, accum):
    trainer = single_process_trainer(_config(fake_cifar, name, accum_steps=accum, warm_averages=False),
                                     tiny_model(1))
    recorder = _PassRecorder(trainer.model)
    batches = []
    make_batch = trainer.algorithm.batch
    trainer.algorithm.batch = lambda *a: batches.append(make_batch(*a)) or batches[-1]
    for _ in range(2):
        before = trainer.bn_layers[0].running_mean.clone()
        recorder.calls.clear()
        trainer.train_step()
        tracked = [x for x, tracking in recorder.calls if tracking]
        assert len(tracked) == 1 and len(recorder.calls) >= accum  # one pass updates the statistics ...
        assert torch.equal(tracked[0], _tracked_pass_rows(batches[-1], accum))  # ...
        assert not torch.equal(trainer.bn_layers[0].running_mean, before)  # ... of micro-batch 0
    assert all(int(m.num_batches_tracked) == 2 for m in trainer.bn_layers)


@pytest.mark.parametrize("name", NAMES)
def test_resume_is_exact(fake_cifar, name):
    """Three steps in one go equal two steps, a checkpoint, a new Trainer and one more step: weights, EMA,
    optimizer, RNG (mixup, VAT's direction) and the algorithm's own state."""
    straight, resumed, _ = straight_and_resumed(_config(fake_cifar, name, accum_steps=2))
    for a, b in zip(list(resumed.model.state_dict().values()) + list(resumed.ema.model.state_dict().values()),
                    list(straight.model.state_dict().values()) + list(straight.ema.model.state_dict().values())):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_taylor_scores_with_the_algorithms_weighted_loss(fake_cifar, name, monkeypatch):
    cfg = _config(fake_cifar, name)
    data = prepare_data(cfg.data_dir, cfg.n_labeled, cfg.n_valid, cfg.seed)
    cls = algorithms.load(name)
    seen = []
    original = cls.loss
    monkeypatch.setattr(cls, "loss", lambda self, *a: seen.append(original(self, *a)) or seen[-1])
    loss = taylor.training_loss_fn(cfg, data, torch.device("cpu"), 8)(tiny_model(3), 0)
    assert len(seen) == 1 and set(seen[0]) == set(cls.terms)
    weights = cls(cfg, data.num_classes).weights(cfg.steps * cfg.batch_size)
    expected = sum(weights.get(k, 1.0) * v for k, v in seen[0].items())
    torch.testing.assert_close(loss, expected)
    assert loss.requires_grad


@pytest.mark.parametrize("name", NAMES)
def test_bf16_and_a_pruning_schedule(fake_cifar, name):
    """Every algorithm under bf16 autocast with magnitude pruning in training: finite terms, masks kept."""
    from semisup.compress.training import install
    from semisup.masks import sparsity

    cfg = _config(fake_cifar, name, prune_schedule="oneshot", prune_ratio=0.5, steps=3)
    trainer = single_process_trainer(cfg, tiny_model(4), amp_dtype=torch.bfloat16)
    install(trainer)
    for _ in range(3):
        terms, _ = trainer.train_step()
        assert all(torch.isfinite(v) for v in terms.values())
    assert sparsity(trainer.model) == pytest.approx(0.5, abs=0.01)


def test_an_algorithms_own_state_travels_in_the_checkpoint(fake_cifar):
    """What ``state_dict()`` returns is saved with the run and handed back to ``load_state_dict()`` on resume."""
    cfg = _config(fake_cifar, "pseudo-label")
    trainer = single_process_trainer(cfg, tiny_model(2))
    trainer.algorithm.state_dict = lambda: {"seen": torch.tensor([3, 1, 4])}
    state = trainer.state_dict()
    received = []
    resumed = single_process_trainer(cfg, tiny_model(2))
    resumed.algorithm.load_state_dict = received.append
    resumed.load_state_dict(state)
    assert len(received) == 1 and torch.equal(received[0]["seen"], torch.tensor([3, 1, 4]))
