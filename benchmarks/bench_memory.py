#!/usr/bin/env python
"""Peak memory of one MixMatch training step at a fixed effective batch, for several --accum-steps K.

    python benchmarks/bench_memory.py                    # WRN-28-2, batch 64 (+ 2 x 64 unlabeled views), K=1,2,4,8
    python benchmarks/bench_memory.py --amp bf16 --accum 1 4

Every K runs in a fresh process (no allocator cache or high-water mark carries over), takes one warm-up step
(Adam's state, kernel caches) and then measures the second step:
- CUDA: ``torch.cuda.max_memory_allocated`` during the step minus the memory allocated before it;
- CPU: the process's peak resident memory during the step (VmHWM, reset through /proc/self/clear_refs just before
  it) minus its resident memory before it, with glibc's mmap threshold fixed at 128 KiB so that freed tensors
  leave the resident set instead of lingering in the heap.
Either way the number is what the step adds on top of the model, EMA, optimizer state and data, which K does not
change. Ratios are against K=1 measured the same way; timings are one step each on a shared machine, indicative.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MIB = 1024 * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure(args) -> dict:
    """Build a Trainer on generated images, take a warm-up step, measure the next one (this process only)."""
    import torch

    from semisup.config import Config, validate
    from semisup.data import Dataset, Split, SSLData
    from semisup.engine import Trainer
    from semisup.models import create_model
    from semisup.runtime import make_runtime

    cfg = validate(Config(model=args.model, batch_size=args.batch_size, accum_steps=args.child, amp=args.amp,
                          channels_last=args.channels_last, device=args.device, threads=args.threads))
    rt = make_runtime(cfg)
    g = torch.Generator().manual_seed(0)

    def images(n: int) -> Dataset:
        return Dataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                       torch.randint(0, 10, (n,), generator=g))

    empty = images(0)
    data = SSLData(images(4 * args.batch_size), images(16 * args.batch_size), empty, empty, Split([], [], []), 10)
    torch.manual_seed(0)
    trainer = Trainer(cfg, rt, data, create_model(cfg.model))
    trainer.train_step()
    cuda = rt.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _status_kib("VmRSS") * 1024
        _reset_peak_rss()
    start = time.perf_counter()
    trainer.train_step()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _status_kib("VmHWM") * 1024
    return {"step_mib": (peak - before) / MIB, "before_mib": before / MIB, "seconds": time.perf_counter() - start,
            "device": str(rt.device)}


def run_child(args, k: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(k), "--model", args.model,
           "--batch-size", str(args.batch_size), "--amp", args.amp, "--channels-last", args.channels_last,
           "--device", args.device, "--threads", str(args.threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"bench_memory.py: K={k} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(args, results: dict) -> str:
    ref = results[args.accum[0]]["step_mib"]
    k_views = 2
    rows = [f"| K | rows per micro-batch | step peak (MiB) | vs K={args.accum[0]} | step time (s) |",
            "| ---: | ---: | ---: | ---: | ---: |"]
    for k, r in results.items():
        micro = args.batch_size // k * (1 + k_views)
        rows.append(f"| {k} | {micro} | {r['step_mib']:.1f} | {r['step_mib'] / ref:.2f} | {r['seconds']:.2f} |")
    return "\n".join(rows)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="wrn-28-2")
    p.add_argument("--batch-size", type=int, default=64, help="labeled images per optimizer step")
    p.add_argument("--accum", type=int, nargs="+", default=[1, 2, 4, 8], help="K values; the first is the reference")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--channels-last", default="off", choices=["on", "off"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return
    results = {k: run_child(args, k) for k in args.accum}
    device = next(iter(results.values()))["device"]
    what = ("max_memory_allocated during the step minus allocated before it" if device.startswith("cuda") else
            "peak RSS (VmHWM) during the step minus RSS before it, fresh process per K")
    print(f"{args.model}, batch {args.batch_size} labeled + {2 * args.batch_size} unlabeled views per step, "
          f"amp {args.amp}, channels-last {args.channels_last}, {device}; measured: {what}")
    print(f"resident before the step (libraries, model, EMA, Adam, data) at K={args.accum[0]}: "
          f"{results[args.accum[0]]['before_mib']:.1f} MiB\n")
    print(table(args, results))
    if 1 in results and 4 in results:
        ratio = results[4]["step_mib"] / results[1]["step_mib"]
        print(f"\nK=4 / K=1 = {ratio:.2f} (goal: at most 0.40): {'met' if ratio <= 0.4 else 'NOT met'}")


if __name__ == "__main__":
    main()
