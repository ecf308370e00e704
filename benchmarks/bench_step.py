#!/usr/bin/env python
"""Speed of one MixMatch optimizer step: the default training path against a plain reference, in one process.

WRN-28-2, batch 64, K = 2 (192 training images per step). The default path is ``Trainer.train_step`` with the
settings ``train.py`` picks on this device; the reference is ``semisup.reference`` (fp32, NCHW, eager, per-image
PIL augmentation through a DataLoader, two guessing passes, three forward chunks). Both run the same math. The two
paths are timed in alternating rounds so that a change in machine load hits both alike; the speed-up is the ratio
of the median per-step times.

    python benchmarks/bench_step.py                          # the device train.py would pick
    python benchmarks/bench_step.py --rounds 5 --steps 4     # longer, steadier
    python benchmarks/bench_step.py -- --no-compile --amp none   # train.py flags after -- change the default path
    python benchmarks/bench_step.py --eval-only --rounds 3   # the evaluation figure alone, no training steps

The data is synthetic (uniform random uint8 images): the cost of a step does not depend on the pixels.
"""
import argparse
import copy
import functools
import os
import statistics
import sys
import time
from contextlib import contextmanager

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from semisup.compress.report import count_macs  # noqa: E402
from semisup.config import parse_args  # noqa: E402
from semisup.data import Dataset, SSLData, split_indices  # noqa: E402
from semisup.engine import Trainer  # noqa: E402
from semisup.models import create_model  # noqa: E402
from semisup.reference import ReferenceTrainer, reference_predict  # noqa: E402
from semisup.runtime import device_name, eval_batch_size, make_runtime  # noqa: E402


def synthetic_data(n_unlabeled: int, n_eval: int, n_labeled: int = 250, seed: int = 0) -> SSLData:
    g = torch.Generator().manual_seed(seed)

    def make(n):
        return Dataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                       torch.arange(n) % 10)

    labeled, unlabeled, evalset = make(n_labeled), make(n_unlabeled), make(n_eval)
    split = split_indices(torch.arange(n_labeled + 20) % 10, n_labeled, 10, seed)
    return SSLData(labeled=labeled, unlabeled=unlabeled, valid=evalset, test=evalset, split=split, num_classes=10)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step_fn, steps: int, device) -> float:
    """Mean seconds per step over ``steps`` calls, device work included."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step_fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def describe(rt, cfg) -> str:
    return (f"device: {rt.device} ({device_name(rt.device)}), torch {torch.__version__}\n"
            f"default path: amp {str(rt.amp_dtype).replace('torch.', '')}, "
            f"memory format {str(rt.memory_format).replace('torch.', '')}, compile {rt.compile}, "
            f"eval batch {eval_batch_size(cfg.eval_batch_size, rt.device)}")


def build(cfg, rt, data):
    torch.manual_seed(cfg.seed)
    trainer = Trainer(cfg, rt, data, create_model(cfg.model, data.num_classes))
    ref_model = create_model(cfg.model, data.num_classes)
    ema_model = create_model(cfg.model, data.num_classes)
    ema_model.load_state_dict(ref_model.state_dict())
    reference = ReferenceTrainer(ref_model, ema_model, data.labeled, data.unlabeled, cfg.batch_size, cfg.K,
                                 cfg.lr, cfg.wd, cfg.ema_decay, cfg.alpha, cfg.temperature, cfg.lambda_u, rt.device)
    return trainer, reference


def run_training(trainer, reference, args, device):
    """Warm up both paths, then alternate timed rounds; returns the median seconds per step of each path and the
    first default step's time (torch.compile compiles there)."""
    default_step = trainer.train_step
    start = time.perf_counter()
    default_step()
    sync(device)
    first_step = time.perf_counter() - start
    for _ in range(args.warmup - 1):
        default_step()
    for _ in range(args.warmup):
        reference.step()
    times = {"default": [], "reference": []}
    for _ in range(args.rounds):
        times["default"].append(timed(default_step, args.steps, device))
        times["reference"].append(timed(reference.step, args.steps, device))
    return {k: statistics.median(v) for k, v in times.items()}, first_step


def data_seconds(trainer, reference, K: int, steps: int, device) -> dict:
    """Seconds per step of each path's data pipeline alone (sampling, augmentation, conversion, transfer), timed
    apart from the steps so that no extra synchronisation enters the timed steps."""
    def default_data():
        trainer._views("labeled", 1)
        trainer._views("unlabeled", K)

    return {"default": timed(default_data, steps, device), "reference": timed(reference.next_batch, steps, device)}


@contextmanager
def quiet_stderr():
    """The profiler's C++ side logs its start and stop to stderr; keep the report readable."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def conv_seconds(step_fn):
    """(seconds inside convolution operators, forward and backward; seconds of the whole step) for one profiled
    step on the CPU."""
    from torch.profiler import ProfilerActivity, profile
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step_fn()
        wall = time.perf_counter() - start
    return sum(e.self_cpu_time_total for e in prof.key_averages() if "convolution" in e.key) / 1e6, wall


def forward_gflop(model: torch.nn.Module) -> float:
    """GFLOP of one image's forward pass (convolutions and the classifier): 2 FLOPs per multiply-accumulate."""
    return 2 * count_macs(model) / 1e9


def matmul_gflops(device, dtype) -> float:
    """GFLOP/s of a 2048 x 2048 matrix product in ``dtype``: what the device's cores reach on dense math."""
    a, b = (torch.randn(2048, 2048, device=device).to(dtype) for _ in range(2))
    a @ b
    return 2 * 2048 ** 3 / timed(lambda: a @ b, 5, device) / 1e9


def symmetric_copy(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every strided 3x3 convolution padded (1, 1) as PyTorch's ``padding=1``, not TF's (0, 1)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, torch.nn.Conv2d) and module.stride != (1, 1) and module.kernel_size == (3, 3):
            module.padding = (1, 1)
            module.forward = functools.partial(torch.nn.Conv2d.forward, module)
    return twin


def padding_cost(trainer, rounds: int, steps: int, device) -> float:
    """Seconds per training pass (forward + backward of one step's rows, the default path's precision and memory
    format) with TF's asymmetric padding over the same with symmetric padding, timed in alternating rounds."""
    rows = trainer.cfg.batch_size * (1 + trainer.cfg.K)
    x = torch.randn(rows, 3, 32, 32, device=device).to(memory_format=trainer.rt.memory_format)
    models = {"tf": trainer.model, "symmetric": symmetric_copy(trainer.model)}

    def step(model):
        with trainer.rt.autocast():
            loss = model(x).float().sum()
        loss.backward()

    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(timed(lambda m=model: step(m), steps, device))
    return statistics.median(times["tf"]) / statistics.median(times["symmetric"])


def run_eval(trainer, reference, data, device):
    """Images/s of the default evaluation (raw and EMA model, both eval splits) and of the reference's."""
    trainer.evaluate()
    default = trainer.evaluate()["eval_img_per_sec"]
    images = data.test.images
    reference_predict(reference.model, images[:256], device=device)
    sync(device)
    start = time.perf_counter()
    reference_predict(reference.model, images, device=device)
    sync(device)
    return default, len(images) / (time.perf_counter() - start)


def clocked(fn) -> tuple:
    """(wall seconds, CPU seconds of this process over all its threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def eval_only(trainer, reference, data, rounds: int, device) -> int:
    """The evaluation figure alone: both paths alternated over ``rounds``, as images per wall-clock second and per
    CPU second. The CPU figure is the steadier one on a shared machine (other processes' load slows the wall
    clock, not the work), and with --threads 1 it is the wall-clock figure of an idle core."""
    n_default = 2 * (len(data.valid) + len(data.test))
    run_eval(trainer, reference, data, device)
    times = {"reference": [], "default": []}
    for _ in range(rounds):
        times["default"].append(clocked(lambda: (trainer.evaluate(), sync(device))))
        times["reference"].append(clocked(lambda: (reference_predict(reference.model, data.test.images,
                                                                     device=device), sync(device))))
    for name, n in (("reference", len(data.test)), ("default", n_default)):
        wall, cpu = (statistics.median(t[i] for t in times[name]) for i in (0, 1))
        print(f"{name:<11} eval {n / wall:>7.0f} img/s, {n / cpu:>7.0f} img per CPU-second "
              f"(median of {rounds} rounds)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per path before timing")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per path per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--eval-images", type=int, default=1024, help="images per evaluation split")
    parser.add_argument("--eval-only", action="store_true",
                        help="time evaluation alone (--rounds evaluations per path), no training step")
    args, train_flags = parser.parse_known_args(argv)
    train_flags = [f for f in train_flags if f != "--"]
    cfg = parse_args(["--no-progress", *train_flags], prog="bench_step.py")
    rt = make_runtime(cfg)
    data = synthetic_data(n_unlabeled=4096, n_eval=args.eval_images)
    trainer, reference = build(cfg, rt, data)
    print(describe(rt, cfg))
    if args.eval_only:
        return eval_only(trainer, reference, data, args.rounds, rt.device)
    print(f"model {cfg.model}, batch {cfg.batch_size}, K {cfg.K}: {cfg.batch_size * (1 + cfg.K)} images per step; "
          f"{args.warmup} warm-up + {args.rounds} x {args.steps} timed steps per path", flush=True)
    sec, first = run_training(trainer, reference, args, rt.device)
    data_sec = data_seconds(trainer, reference, cfg.K, args.rounds * args.steps, rt.device)
    share = {k: data_sec[k] / sec[k] for k in sec}
    eval_default, eval_reference = run_eval(trainer, reference, data, rt.device)
    conv = None
    if rt.device.type == "cpu":
        conv = {"default": conv_seconds(trainer.train_step), "reference": conv_seconds(reference.step)}
    n_img = cfg.batch_size * (1 + cfg.K)
    print(f"{'path':<11}{'s/step':>9}{'steps/s':>9}{'img/s':>9}{'data share':>12}{'eval img/s':>12}")
    for name, ev in (("reference", eval_reference), ("default", eval_default)):
        print(f"{name:<11}{sec[name]:>9.3f}{1 / sec[name]:>9.3f}{n_img / sec[name]:>9.1f}"
              f"{100 * share[name]:>11.1f}%{ev:>12.0f}")
    print(f"default first step (compilation included): {first:.1f} s")
    if conv:
        (ref, ref_wall), (dft, dft_wall) = conv["reference"], conv["default"]
        print(f"convolutions (one profiled step): reference {ref:.3f} s ({100 * ref / ref_wall:.0f}% of it), default "
              f"{dft:.3f} s ({100 * dft / dft_wall:.0f}%); reference/default {ref / dft:.2f}")
        print(f"bound: a default step made of its convolutions alone would be {sec['reference'] / dft:.2f}x faster "
              f"than the reference step")
    gflop, dtype = forward_gflop(reference.model), rt.amp_dtype or torch.float32
    peak = matmul_gflops(rt.device, dtype)
    print(f"compute: {gflop:.3f} GFLOP per image forward; default evaluation at {gflop * eval_default:.0f} GFLOP/s; "
          f"a 2048x2048 {str(dtype).replace('torch.', '')} matmul at {peak:.0f} GFLOP/s")
    print(f"bound: evaluation at the matmul's GFLOP/s would reach {peak / gflop:.0f} images/s")
    print(f"TF 'same' padding of the strided convolutions, cost over symmetric padding (forward + backward): "
          f"{padding_cost(trainer, args.rounds, args.steps, rt.device):.3f}x")
    print(f"evaluation speed-up: {eval_default / eval_reference:.2f}")
    print(f"speedup: {sec['reference'] / sec['default']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
