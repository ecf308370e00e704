"""The default training path (``Trainer.train_step``) computes the same MixMatch loss and gradients as the plain
reference path (``semisup.reference``), and the per-device speed defaults resolve as documented.

The reference gets exactly the augmented views and mixup draws (λ, permutation) the trainer used, recorded on the
way. In fp32 the losses, every gradient and the batch-norm running statistics agree to rounding; under bf16
autocast with channels-last they agree within the tolerances stated below.
"""
import copy

import pytest
import torch

import semisup.mixmatch as mixmatch
import semisup.runtime as speed
from semisup.config import Config, parse_args, validate
from semisup.data import prepare_data
from semisup.engine import Trainer
from semisup.models import create_model
from semisup.predict import predict
from semisup.reference import reference_losses
from semisup.runtime import COMPILE_MIN_STEPS, Runtime, adam, eval_batch_size, make_runtime, resolve_compile, to_device

CPU = torch.device("cpu")
# bf16 keeps 8 bits of mantissa. On this tiny network (4-16 channels, 8 rows per batch-norm chunk) the losses
# stay within 0.2 % of fp32 and the whole gradient within about 7 % (single tensors up to about 25 %, still pointing
# the same way): the bounds below leave a margin over that.
BF16_LOSS_RTOL, BF16_GRAD_RTOL, BF16_TENSOR_COSINE = 0.01, 0.15, 0.9


def tiny_model(seed: int) -> torch.nn.Module:
    """wrn-10-tiny with non-trivial batch-norm affine parameters and running statistics."""
    torch.manual_seed(seed)
    model = create_model("wrn-10-tiny")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model


def trainer_and_reference(data_dir, monkeypatch, seed, amp_dtype=None, memory_format=torch.contiguous_format):
    """One Trainer.train_step and the reference step on the same views and mixup draws; returns both models and
    both (loss_x, loss_u)."""
    cfg = validate(Config(data_dir=data_dir, model="wrn-10-tiny", n_labeled=40, n_valid=100, batch_size=8,
                          rampup_kimg=0, progress=False, seed=seed, warm_averages=False))  # the reference: official
    model = tiny_model(seed)
    ref = copy.deepcopy(model)
    rt = Runtime(device=CPU, amp_dtype=amp_dtype, memory_format=memory_format)
    trainer = Trainer(cfg, rt, prepare_data(data_dir, 40, 100, seed), model)
    views, draws = [], []
    draw_mixup, take_views = mixmatch.draw_mixup, trainer._views
    monkeypatch.setattr(mixmatch, "draw_mixup", lambda *a, **k: draws.append(draw_mixup(*a, **k)) or draws[-1])
    trainer._views = lambda name, count: views.append(take_views(name, count)) or views[-1]
    torch.manual_seed(seed)
    terms, _ = trainer.train_step()
    loss_x, loss_u = terms["x"], terms["u"]
    ((x_lb,), y_lb, _), (x_ulb, _, _) = views
    lam, perm = draws[0]
    fp32 = [v.float().contiguous() for v in (x_lb, *x_ulb)]
    ref_loss, ref_x, ref_u = reference_losses(ref, fp32[0], y_lb, fp32[1:], lam, perm, cfg.T, cfg.lambda_u)
    ref_loss.backward()
    return trainer.model, ref, (loss_x.detach(), loss_u.detach()), (ref_x.detach(), ref_u.detach())


def grads(model):
    return {n: p.grad.detach().float() for n, p in model.named_parameters()}


def test_fp32_same_losses_gradients_and_bn_statistics(fake_cifar, monkeypatch):
    fast, ref, (fx, fu), (rx, ru) = trainer_and_reference(fake_cifar, monkeypatch, seed=3)
    assert fx > 0.1 and fu > 1e-4  # a real loss, not a degenerate zero
    assert torch.allclose(fx, rx, rtol=1e-5) and torch.allclose(fu, ru, rtol=1e-5)
    g_fast, g_ref = grads(fast), grads(ref)
    for name in g_ref:
        assert torch.allclose(g_fast[name], g_ref[name], rtol=1e-4, atol=1e-7), name
    for (name, b_fast), b_ref in zip(fast.named_buffers(), ref.buffers()):
        assert torch.allclose(b_fast.float(), b_ref.float(), rtol=1e-5, atol=1e-7), name


def test_only_one_pass_per_step_updates_bn_statistics(fake_cifar, monkeypatch):
    before = tiny_model(4).state_dict()
    fast, _, _, _ = trainer_and_reference(fake_cifar, monkeypatch, seed=4)
    for name, b in fast.named_buffers():
        if name.endswith("num_batches_tracked"):
            assert b.item() == before[name].item() + 1, name  # one updating pass, not K guesses + K + 1 chunks
        else:
            assert not torch.equal(b, before[name]), name


@pytest.mark.parametrize("seed", [5, 6])
def test_bf16_channels_last_within_tolerance(fake_cifar, monkeypatch, seed):
    fast, ref, (fx, fu), (rx, ru) = trainer_and_reference(fake_cifar, monkeypatch, seed, torch.bfloat16,
                                                          torch.channels_last)
    assert abs(fx - rx) <= BF16_LOSS_RTOL * rx and abs(fu - ru) <= BF16_LOSS_RTOL * ru
    g_fast, g_ref = grads(fast), grads(ref)
    flat_fast, flat_ref = (torch.cat([g[n].flatten() for n in g_ref]) for g in (g_fast, g_ref))
    err = ((flat_fast - flat_ref).norm() / flat_ref.norm()).item()
    assert err <= BF16_GRAD_RTOL, f"relative gradient error {err:.3f}"
    for name in g_ref:
        cos = torch.nn.functional.cosine_similarity(g_fast[name].flatten(), g_ref[name].flatten(), dim=0)
        assert cos >= BF16_TENSOR_COSINE, f"{name}: cosine {cos:.3f}"


def test_compile_default_depends_on_run_length_and_flags(monkeypatch):
    monkeypatch.setattr(speed, "compile_problem", lambda device: None)  # as where a compiler is installed
    assert resolve_compile(True, CPU, 1) and not resolve_compile(False, CPU, 1 << 20)
    assert not resolve_compile(None, CPU, COMPILE_MIN_STEPS - 1) and resolve_compile(None, CPU, COMPILE_MIN_STEPS)
    assert parse_args([]).compile is None and parse_args(["--no-compile"]).compile is False
    assert make_runtime(parse_args(["--steps", "100"])).compile is False
    assert make_runtime(parse_args(["--steps", "100", "--compile"])).compile is True


def test_eval_batch_default_per_device_and_same_logits():
    assert eval_batch_size(0, "cpu") == 128 and eval_batch_size(0, torch.device("cuda")) == 1024
    assert eval_batch_size(7, "cpu") == 7
    model = tiny_model(0)
    images = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8)
    auto, small = predict(model, images, 0), predict(model, images, 7)
    assert auto.shape == (300, 10) and torch.allclose(auto, small, atol=1e-5)


def test_fused_adam_is_adam():
    """Two steps of the fused optimizer against Adam's equations: m, v moving averages, bias-corrected."""
    torch.manual_seed(0)
    w = torch.randn(50, requires_grad=True)
    w0, grads_seen = w.detach().clone(), [torch.randn(50), torch.randn(50)]
    opt = adam([w], 0.01, CPU)
    assert opt.defaults["fused"]
    m = v = torch.zeros(50)
    expected = w0.clone()
    for t, g in enumerate(grads_seen, 1):
        w.grad = g.clone()
        opt.step()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        expected -= 0.01 * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-8)
    assert torch.allclose(w.detach(), expected, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(w.detach(), w0, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_device_non_blocking_copy_arrives_intact():
    src = torch.randperm(10_000)
    out = to_device(src, "cuda")
    assert out.device.type == "cuda" and torch.equal(out.cpu(), src)
