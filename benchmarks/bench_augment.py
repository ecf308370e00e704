#!/usr/bin/env python
"""Images per second per CPU core of the weak, RandAugment and CTAugment pipelines on 32x32 uint8 images, and the
share of a FixMatch step they take.

A FixMatch step (mu = 7, batch 64) needs 64 + 448 weakly augmented images and 448 strong ones (plus 64 CTA probes
with CTAugment). The weak pipeline is ``semisup.augment.augment`` (flip + reflect-pad crop, batched); the strong
ones are ``semisup.strong`` (per image, as the official code is). Everything runs on one thread, so the seconds per
step are per core, and ``--step-seconds`` (the time of the model's step on the accelerator) gives the cores that
keep up when the strong views are made in parallel worker processes.

    python benchmarks/bench_augment.py                       # 0.1 s GPU step
    python benchmarks/bench_augment.py --step-seconds 0.25 --images 1024
"""
import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from semisup.augment import augment  # noqa: E402
from semisup.strong import CTAugment, RandAugment  # noqa: E402


def images_per_second(fn, images: torch.Tensor, repeats: int) -> float:
    """Best of ``repeats`` timings of ``fn(images)``, as images per second."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn(images)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def trained_cta(generator) -> CTAugment:
    """A CTAugment whose weights have moved, so policies are drawn from uneven bins as in a run."""
    cta = CTAugment()
    for _ in range(50):
        cta.update([cta.policy(True, generator) for _ in range(64)], torch.rand(64, generator=generator))
    return cta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="images per timing (default 512)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per pipeline; the best counts (default 3)")
    parser.add_argument("--step-seconds", type=float, default=0.1, help="accelerator time of one FixMatch step")
    parser.add_argument("--batch", type=int, default=64, help="labeled batch (default 64)")
    parser.add_argument("--mu", type=int, default=7, help="unlabeled batch / labeled batch (default 7)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), generator=g, dtype=torch.uint8)
    ra, cta = RandAugment(), trained_cta(g)
    n_weak, n_strong = args.batch + args.batch * args.mu, args.batch * args.mu
    rates = {
        "weak": images_per_second(lambda x: augment(x, g), images, args.repeats),
        "randaugment": images_per_second(lambda x: ra(x, g), images, args.repeats),
        "ctaugment": images_per_second(lambda x: cta(x, g), images, args.repeats),
        "cta probe": images_per_second(lambda x: [cta.probe(i, g) for i in x], images, args.repeats),
    }
    print(f"torch {torch.__version__}, 1 thread, {args.images} images of 32x32, best of {args.repeats}")
    print(f"{'pipeline':12s} {'images/s':>10s}")
    for name, rate in rates.items():
        print(f"{name:12s} {rate:10.0f}")
    weak = n_weak / rates["weak"]
    print(f"\nFixMatch step: batch {args.batch}, mu {args.mu}: {n_weak} weak + {n_strong} strong images"
          f" (+{args.batch} CTA probes); GPU step {args.step_seconds:g} s")
    for name, extra in [("randaugment", 0.0), ("ctaugment", args.batch / rates["cta probe"])]:
        seconds = weak + n_strong / rates[name] + extra
        print(f"{name:12s} {seconds:7.3f} s of augmentation per step per core;"
              f" {math.ceil(seconds / args.step_seconds)} cores keep up"
              f" ({seconds / (seconds + args.step_seconds):.0%} of a one-core step)")


if __name__ == "__main__":
    main()
