"""Memory over a long run: resident set size and live Python objects every few hundred steps.

    python benchmarks/long_run_memory.py --steps 3000 --every 500

Trains the tiny WRN (wrn-10-tiny) with MixMatch on generated CIFAR-format data (or --data-dir), evaluating and
saving a checkpoint every --every steps, and prints one row per evaluation. A flat run shows RSS settling after
the first evaluations and the live Python objects (and the items in all lists, dicts and sets) not growing with
the step count.
"""
import argparse
import gc
import os
import pickle
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from semisup import runner  # noqa: E402
from semisup.config import parse_args  # noqa: E402
from semisup.data import prepare_from_config  # noqa: E402
from semisup.engine import Trainer  # noqa: E402
from semisup.models import create_model  # noqa: E402
from semisup.runtime import make_runtime  # noqa: E402


def write_data(folder: str, n_train: int = 1000, n_test: int = 200) -> str:
    """CIFAR-10's python layout with random images."""
    rng = np.random.RandomState(0)
    out = os.path.join(folder, "cifar-10-batches-py")
    os.makedirs(out, exist_ok=True)
    for name, n in [(f"data_batch_{i}", n_train // 5) for i in range(1, 6)] + [("test_batch", n_test)]:
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump({"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
                         "labels": (np.arange(n) % 10).tolist()}, f)
    return folder


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def live_objects():
    gc.collect()
    objects = gc.get_objects()
    return len(objects), sum(len(o) for o in objects if type(o) in (list, dict, set))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--data-dir", default="")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="semisup-memory-")
    data_dir = args.data_dir or write_data(os.path.join(work, "data"))
    cfg = parse_args(["--model", "wrn-10-tiny", "--n-labeled", "40", "--n-valid", "100", "--batch-size", "8",
                      "--eval-batch-size", "100", "--threads", "2", "--no-progress", "--amp", "none",
                      "--data-dir", data_dir, "--steps", str(args.steps), "--eval-every", str(args.every)])
    data = prepare_from_config(cfg)
    trainer = Trainer(cfg, make_runtime(cfg), data, create_model(cfg.model, data.num_classes))
    rows = []

    def measure(t, step):
        rows.append((step, rss_mib(), *live_objects()))
        first = rows[0]
        print(f"{step:>7} {rows[-1][1]:>9.1f} {rows[-1][1] - first[1]:>+8.1f} {rows[-1][2]:>9} "
              f"{rows[-1][2] - first[2]:>+7} {rows[-1][3]:>9} {rows[-1][3] - first[3]:>+7}", flush=True)

    trainer.add_hook("after_step", lambda t, step: measure(t, step + 1) if (step + 1) % args.every == 0 else None)
    print(f"{'step':>7} {'RSS MiB':>9} {'ΔMiB':>8} {'objects':>9} {'Δ':>7} {'items':>9} {'Δ':>7}")
    out = os.path.join(work, "run")
    os.makedirs(out)
    logger = runner.Logger(out, [], True, 1)
    try:
        runner._loop(cfg, trainer, logger, out)
    finally:
        logger.close()
    (s0, r0, o0, i0), (s1, r1, o1, i1) = rows[1], rows[-1]
    print(f"from step {s0} to {s1}: RSS {r1 - r0:+.1f} MiB ({(r1 - r0) / (s1 - s0) * 1000:+.2f} MiB per 1000 "
          f"steps), live objects {o1 - o0:+d}, container items {i1 - i0:+d}")


if __name__ == "__main__":
    main()
