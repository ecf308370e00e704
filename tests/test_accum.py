"""Gradient accumulation: K micro-batches give the full batch's gradients and count one optimizer step.

Compared with a batch-norm-free model (``strip_bn``): with batch norm in training mode every micro-batch is
normalised with its own statistics, the one documented difference from a true large batch.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from semisup.config import ConfigError
from semisup.distributed import per_rank_batch, restore_rng_state, rng_state
from semisup.mixmatch import mix_batch
from semisup.runtime import check_sync_bn, resolve_compile

from accum_support import backward_in_micro_batches, single_process_trainer, tiny_config, tiny_model
from conftest import ROOT, TINY


def _flat_grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_accum_mixmatch_backward_matches_full_batch_gradients():
    """The pure functions: the same guesses and mixup, backpropagated whole or in 4 micro-batches."""
    model = tiny_model(0, bn=False)
    torch.manual_seed(1)
    B, K = 8, 2
    x_lb, y_lb = torch.randn(B, 3, 32, 32), torch.randint(0, 10, (B,))
    x_ulb = [torch.randn(B, 3, 32, 32) for _ in range(K)]
    x_mix, t_mix, _ = mix_batch(model, x_lb, y_lb, x_ulb, 10, 0.5, 0.75, "all")
    grads, losses = {}, {}
    for accum in (1, 4):
        model.zero_grad()
        losses[accum] = backward_in_micro_batches(model, x_mix, t_mix, B, K, 75.0, accum)
        grads[accum] = _flat_grads(model)
    assert grads[1].abs().max() > 1e-2  # a real gradient, not zeros on both sides
    torch.testing.assert_close(grads[4], grads[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.stack(losses[4]), torch.stack(losses[1]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("algorithm", ["mixmatch", "supervised"])
def test_accum_trainer_step_matches_full_batch(fake_cifar, algorithm):
    """A whole Trainer step (sampling, augmentation, guessing, mixup, Adam, weight decay, EMA) at K=4 vs K=1."""
    out = {}
    for accum in (1, 4):
        ramp = {"rampup_steps": 1} if algorithm == "mixmatch" else {}
        cfg = tiny_config(fake_cifar, accum_steps=accum, algorithm=algorithm, **ramp)
        trainer = single_process_trainer(cfg, tiny_model(1, bn=False))
        initial = [p.detach().clone() for p in trainer.model.parameters()]
        trainer.step = 1  # λu at its full value (--rampup-steps 1)
        terms, _ = trainer.train_step()
        out[accum] = (_flat_grads(trainer.model), list(trainer.model.parameters()),
                      list(trainer.ema.model.parameters()), torch.stack(list(terms.values())))
    (g1, p1, e1, l1), (g4, p4, e4, l4) = out[1], out[4]
    torch.testing.assert_close(g4, g1, rtol=0, atol=1e-5)
    torch.testing.assert_close(l4, l1, rtol=0, atol=1e-5)
    moved = max((a - b).abs().max().item() for a, b in zip(p1, initial))
    assert moved > 1e-4  # Adam moved the weights: the comparison below is not between two untouched models
    for a, b in zip(p4 + e4, p1 + e1):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_accum_counters_advance_once_per_optimizer_step(fake_cifar):
    """EMA, Adam, hooks, λu and the batch-norm running statistics count optimizer steps, not micro-batches."""
    decay, steps, accum = 0.9, 3, 4
    cfg = tiny_config(fake_cifar, accum_steps=accum, ema_decay=decay, rampup_steps=16, warm_averages=False)
    trainer = single_process_trainer(cfg, tiny_model(1))
    weights = [[p.detach().clone() for p in trainer.model.parameters()]]
    calls = {"after_backward": 0}
    trainer.add_hook("after_backward", lambda t, s: calls.update(after_backward=calls["after_backward"] + 1))
    trainer.add_hook("after_step", lambda t, s: weights.append([p.detach().clone() for p in t.model.parameters()]))
    lams = [trainer.train_step()[1]["u"] for _ in range(steps)]
    assert lams == [75.0 * s / 16 for s in range(steps)]
    assert calls["after_backward"] == steps and len(weights) == steps + 1
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert adam_steps == {steps}
    tracked = {int(m.num_batches_tracked) for m in trainer.model.modules() if hasattr(m, "num_batches_tracked")}
    assert tracked == {steps}
    # EMA after n updates: decay^n w0 + (1 - decay) Σ_i decay^(n-i) w_i (i = 1..n)
    for j, ema_p in enumerate(trainer.ema.model.parameters()):
        expected = decay ** steps * weights[0][j]
        for i in range(1, steps + 1):
            expected = expected + (1 - decay) * decay ** (steps - i) * weights[i][j]
        torch.testing.assert_close(ema_p, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("accum", [1, 2])
def test_warm_averages_by_hand_once_per_optimizer_step(fake_cifar, accum):
    """--warm-averages: EMA decays min(d, (1+t)/(10+t)) = 0.1, 2/11, 3/12 for t = 0, 1, 2, and the batch-norm
    running mean averages the batch means of the chunk that updates it (one per optimizer step, whatever
    --accum-steps is) with the same weights, from its initial 0: momentum 9/10, 9/11, 9/12."""
    steps = 3
    cfg = tiny_config(fake_cifar, accum_steps=accum, ema_decay=0.999, rampup_steps=16)
    assert cfg.warm_averages  # the default
    trainer = single_process_trainer(cfg, tiny_model(1))
    bn = trainer.model.bn
    seen = []
    bn.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].detach().float().mean((0, 2, 3)))
                             if m.training and m.track_running_stats else None)
    weights = [[p.detach().clone() for p in trainer.model.parameters()]]
    trainer.add_hook("after_step", lambda t, s: weights.append([p.detach().clone() for p in t.model.parameters()]))
    for _ in range(steps):
        trainer.train_step()
    assert len(seen) == steps  # one updating pass per optimizer step
    decays = [0.1, 2 / 11, 3 / 12]
    running = torch.zeros_like(seen[0])
    for mean, d in zip(seen, decays):
        running = d * running + (1 - d) * mean
    torch.testing.assert_close(bn.running_mean, running, rtol=0, atol=1e-6)
    assert int(bn.num_batches_tracked) == steps and bn.momentum == pytest.approx(9 / 12)
    for j, ema_p in enumerate(trainer.ema.model.parameters()):
        expected = weights[0][j]
        for i, d in enumerate(decays, 1):
            expected = d * expected + (1 - d) * weights[i][j]
        torch.testing.assert_close(ema_p, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(trainer.ema.model.bn.running_mean, bn.running_mean)  # buffers follow the model


def test_accum_train_py_logs_per_step_lambda(fake_cifar, tmp_path):
    """Through train.py: 3 steps of 4 micro-batches log λu(step 2) and checkpoint step 3."""
    from semisup.checkpoint import load_checkpoint
    from semisup.runner import main
    out = str(tmp_path / "run")
    argv = TINY + ["--data-dir", fake_cifar, "--out", out, "--steps", "3", "--eval-every", "3",
                   "--accum-steps", "4", "--rampup-steps", "16"]
    assert main(argv) == 0
    with open(os.path.join(out, "metrics.jsonl")) as f:
        record = json.loads(f.readline())
    assert record["step"] == 3 and record["lambda_u"] == pytest.approx(75.0 * 2 / 16)
    state = load_checkpoint(os.path.join(out, "last.pt"))
    assert state["step"] == 3 and len(state["rng"]) == 1


def test_accum_refuses_k_that_does_not_divide_the_batch(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--batch-size", "64",
                           "--accum-steps", "3", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--accum-steps 3 does not divide --batch-size 64" in lines[0]
    assert "choose a divisor of 64: 1, 2, 4, 8, 16, 32, 64" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["0", "-2"])
def test_accum_refuses_k_below_one(value, capsys):
    from semisup.config import parse_args
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--accum-steps", value], prog="train.py")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"train.py: error: --accum-steps must be at least 1 (got {value})"


def test_accum_global_batch_must_split_over_ranks_and_micro_batches():
    assert per_rank_batch(64, 2, 4) == 32
    assert per_rank_batch(64, 1, 8) == 64
    with pytest.raises(ConfigError, match="multiple of 12"):
        per_rank_batch(64, 3, 4)
    with pytest.raises(ConfigError, match="multiple of 16"):
        per_rank_batch(24, 2, 8)


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_accum_mixed_precision_step_on_cpu(fake_cifar, amp):
    """bf16 autocast, and fp16 with a GradScaler that scales each micro-batch and unscales once.

    The unscaled gradients handed to the after_backward hooks must agree with fp32's for the same step, which
    fails by a factor of the loss scale (65536) if any micro-batch is left scaled or unscaled twice.
    """
    grads = {}
    for dtype in (None, amp):
        cfg = tiny_config(fake_cifar, accum_steps=2, rampup_steps=1)
        trainer = single_process_trainer(cfg, tiny_model(1), amp_dtype=dtype)
        assert (trainer.scaler is not None) == (dtype == torch.float16)
        seen = []
        trainer.add_hook("after_backward", lambda t, s, seen=seen: seen.append(_flat_grads(t.model)))
        initial = _flat_params(trainer.model)
        trainer.step = 1  # λu at its full value (--rampup-steps 1)
        terms, _ = trainer.train_step()
        assert torch.isfinite(terms["x"]) and torch.isfinite(terms["u"])
        assert (_flat_params(trainer.model) - initial).abs().max() > 1e-4  # the optimizer step was taken
        grads[dtype] = seen[0]
    ref, low = grads[None], grads[amp]
    assert torch.isfinite(low).all()
    assert torch.nn.functional.cosine_similarity(low, ref, dim=0) > 0.98
    assert low.norm() / ref.norm() == pytest.approx(1.0, abs=0.05)


def _flat_params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_accum_grad_clip_bounds_the_step_gradient(fake_cifar):
    cfg = tiny_config(fake_cifar, accum_steps=2, grad_clip=0.01, rampup_steps=1)
    trainer = single_process_trainer(cfg, tiny_model(1))
    trainer.step = 1  # λu at its full value (--rampup-steps 1)
    trainer.train_step()
    assert _flat_grads(trainer.model).norm() == pytest.approx(0.01, rel=1e-4)


def test_accum_rng_states_are_per_rank():
    torch.manual_seed(3)
    first = rng_state(torch.device("cpu"))
    expected = torch.rand(3)
    torch.manual_seed(4)
    second = rng_state(torch.device("cpu"))
    restore_rng_state([second, first], rank=1, world_size=2, device=torch.device("cpu"))
    torch.testing.assert_close(torch.rand(3), expected)
    restore_rng_state(first, rank=0, world_size=1, device=torch.device("cpu"))  # a one-process checkpoint
    torch.testing.assert_close(torch.rand(3), expected)
    with pytest.raises(ConfigError, match="written by 2 process"):
        restore_rng_state([first, second], rank=0, world_size=1, device=torch.device("cpu"))


def test_accum_refuses_unusable_switches(monkeypatch):
    with pytest.raises(ConfigError, match="SyncBatchNorm does not run on the CPU"):
        check_sync_bn(True, torch.device("cpu"), 2)
    check_sync_bn(True, torch.device("cpu"), 1)  # one process: nothing to synchronise
    monkeypatch.setenv("CXX", "no-such-compiler-for-semisup")
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        resolve_compile(True, torch.device("cpu"), 1)
    assert resolve_compile(None, torch.device("cpu"), 1 << 20) is False  # unset: eager where it cannot compile
