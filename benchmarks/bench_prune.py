#!/usr/bin/env python
"""Slimming vs the dense WRN-28-2 on the CPU, side by side in one process: params, MACs, latency.

Removes ``--ratio`` of the in-branch channels (one global threshold over bn2 |γ|, here random, as after a
slimming run; once exactly, once with each layer's kept count rounded to a multiple of 8) and, for comparison,
zeroes the same fraction of conv/linear weights by magnitude (a masked model with its masks folded in: same
shapes, same dense kernels). Latencies are medians of eval-mode forward passes in three layouts (fp32
contiguous as in report.json, fp32 channels-last, bf16 autocast channels-last), the models timed in turn so that
load changes hit all of them alike.

    python benchmarks/bench_prune.py --threads 2
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from semisup.compress.report import count_macs, count_nonzero_params, count_params, latencies_ms  # noqa: E402
from semisup.compress.slimming import plan  # noqa: E402
from semisup.compress.surgery import remove_channels  # noqa: E402
from semisup.compress.unstructured import magnitude_scores, masks_from_scores  # noqa: E402
from semisup.masks import clear_masks, set_masks  # noqa: E402
from semisup.models import create_model  # noqa: E402

TARGET_MACS, TARGET_SPEEDUP = 0.40, 1.5
LAYOUTS = {"fp32": (torch.contiguous_format, None), "fp32-cl": (torch.channels_last, None),
           "bf16-cl": (torch.channels_last, torch.bfloat16)}


def build(model_name: str, ratio: float):
    torch.manual_seed(0)
    dense = create_model(model_name).eval()
    with torch.no_grad():
        for block in dense.blocks:
            block.bn2.weight.uniform_(0.0, 1.0)
    models = {"dense": dense}
    for name, multiple in (("slimmed", 1), ("slimmed x8", 8)):
        inner, _ = plan(dense, "slim", ratio, multiple=multiple)
        models[name] = remove_channels(dense, inner).eval()
    zeros = create_model(model_name).eval()
    zeros.load_state_dict(dense.state_dict())
    set_masks(zeros, masks_from_scores(magnitude_scores(zeros), ratio, "global"))
    clear_masks(zeros)  # zeros in the dense tensors, as a masked model is deployed
    models[f"{ratio:.0%} zeros"] = zeros
    return models


def print_table(rows, names) -> None:
    print(f"{'':24s}" + "".join(f"{n:>16s}" for n in names))
    for label, values in rows:
        cells = "".join(f"{values[n]:16,.1f}" if isinstance(values[n], float) else f"{values[n]:16,d}" for n in names)
        ratios = "  ".join(f"{values['dense'] / values[n]:.2f}x" for n in names[1:])
        print(f"{label:24s}{cells}   dense/each: {ratios}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="wrn-28-2")
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of in-branch channels removed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batches", default="256,1")
    p.add_argument("--layouts", default="fp32,fp32-cl,bf16-cl",
                   help="fp32 (contiguous, as report.json), fp32-cl (channels-last), bf16-cl (bf16 autocast)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = build(args.model, args.ratio)
    names = list(models)
    print(f"{args.model}: {args.ratio:.0%} of in-branch channels removed (global bn2 |gamma| threshold; x8: kept "
          f"counts rounded to multiples of 8), vs {args.ratio:.0%} of conv/linear weights zeroed; torch "
          f"{torch.__version__}, {args.threads} threads, median of {args.repeats}")
    for name in names[1:3]:
        print(f"{name} inner widths: {models[name].arch['inner']}")
    rows = [("params", {n: count_params(m) for n, m in models.items()}),
            ("nonzero params", {n: count_nonzero_params(m) for n, m in models.items()}),
            ("MACs / image", {n: count_macs(m) for n, m in models.items()})]
    speedups = {}
    for layout in args.layouts.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            fmt, dtype = LAYOUTS[layout]
            ms = latencies_ms(models, batch, args.repeats, memory_format=fmt, dtype=dtype)
            rows.append((f"ms {layout} batch {batch}", ms))
            speedups[(layout, batch)] = ms["dense"] / ms["slimmed"]
    print_table(rows, names)
    macs_cut = 1 - rows[2][1]["slimmed"] / rows[2][1]["dense"]
    at_256 = ", ".join(f"{lay} {v:.2f}x" for (lay, b), v in speedups.items() if b == 256)
    print(f"slimmed: {macs_cut:.1%} fewer MACs (target >= {TARGET_MACS:.0%}); lower latency at batch 256: {at_256} "
          f"(target >= {TARGET_SPEEDUP}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
