#!/usr/bin/env python
"""Network slimming's own networks, dense against slimmed, with the selection as a gather and folded away.

For VGG-19, ResNet-164 and DenseNet-40 (γ drawn as a sparsity-trained network leaves them: |γ| = u³), one global
|γ| threshold removes ``--ratio`` of the batch-norm channels. The slimmed ResNet and DenseNet keep the batch norms
that read the residual stream or the concatenation whole and select the kept channels for the next conv: either
with a gather (``torch.index_select``, the original's ``channel_selection``) or folded into that conv (it reads
every channel with zero weights on the dropped ones: no gather, those MACs back). Params, MACs and the median
eval-mode latency of the three forms, timed in turn, in each layout.

    python benchmarks/bench_slim_networks.py --threads 2
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from semisup.compress import netslim  # noqa: E402
from semisup.compress.report import count_macs, count_params, latencies_ms  # noqa: E402
from semisup.models import batch_norms, create_model  # noqa: E402

LAYOUTS = {"fp32": (torch.contiguous_format, None), "fp32-cl": (torch.channels_last, None),
           "bf16-cl": (torch.channels_last, torch.bfloat16)}


def build(name: str, ratio: float):
    torch.manual_seed(0)
    dense = create_model(name).eval()
    with torch.no_grad():
        for bn in batch_norms(dense):
            bn.weight.copy_(torch.rand_like(bn.weight) ** 3)
    gather = netslim.remove_channels(dense, netslim.plan(dense, ratio)).eval()
    return {"dense": dense, "gather": gather, "folded": netslim.fold_selections(gather).eval()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="vgg19,preresnet-164,densenet-40")
    p.add_argument("--ratio", type=float, default=0.4, help="fraction of batch-norm channels removed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches", default="256,1")
    p.add_argument("--layouts", default="fp32,fp32-cl,bf16-cl")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.ratio:.0%} of batch-norm channels removed (global |gamma| threshold); torch {torch.__version__}, "
          f"{args.threads} threads, median of {args.repeats}; ms per batch, and dense/form")
    for name in args.models.split(","):
        models = build(name, args.ratio)
        print(f"\n{name}: params " + ", ".join(f"{k} {count_params(m) / 1e6:.2f}M" for k, m in models.items())
              + "; MACs/image " + ", ".join(f"{k} {count_macs(m) / 1e6:.0f}M" for k, m in models.items()))
        for layout in args.layouts.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                fmt, dtype = LAYOUTS[layout]
                ms = latencies_ms(models, batch, args.repeats, memory_format=fmt, dtype=dtype)
                cells = "  ".join(f"{k} {v:9.1f} ({ms['dense'] / v:.2f}x)" for k, v in ms.items())
                print(f"  {layout:8s} batch {batch:3d}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
