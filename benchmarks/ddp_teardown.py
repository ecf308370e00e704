#!/usr/bin/env python
"""How often a two-process gloo run (torchrun, CPU) fails at exit: launches it N times and counts the failures.

A rank that ends in C++'s ``std::terminate`` prints ``terminate called without an active exception`` and makes
torchrun exit non-zero after the run's work is on disk; the rate is low (a few in a hundred at most) and rises
with the machine's load, so it is counted over many launches, optionally beside a CPU load.

    python benchmarks/ddp_teardown.py                       # 50 launches of train.py, 2 ranks, 2 steps
    python benchmarks/ddp_teardown.py --load 2 -n 100       # beside 2 busy-looping processes
    python benchmarks/ddp_teardown.py --worker              # tests/ddp_accum_worker.py instead of train.py
    python benchmarks/ddp_teardown.py --in-flight sys.exit -n 10       # the abort on demand (see below)
    python benchmarks/ddp_teardown.py --in-flight exit_process -n 10   # ... and how exit_process avoids it

Each launch trains wrn-10-tiny for ``--steps`` steps on a tiny generated CIFAR-10 in a fresh folder. The output of
every failed launch is kept in ``--keep`` (a temporary folder by default) for reading.

``--in-flight`` launches a few lines instead that make the abort likely: DDP holds the gloo group, each rank starts
an all_gather of tensors made in Python without waiting for it, destroys the group and exits with ``sys.exit`` or
``semisup.distributed.exit_process``, so gloo's threads often finish the collective while Python finalises.
"""
import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
sys.path.insert(0, TESTS)

from conftest import write_fake_cifar  # noqa: E402

ABORT = "terminate called without an active exception"
IN_FLIGHT = """import sys, torch, torch.distributed as dist
from semisup.distributed import exit_process
dist.init_process_group("gloo")
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))
outputs = [torch.empty(1) for _ in range(2)]
dist.group.WORLD.allgather([outputs], [torch.ones(1)])
dist.destroy_process_group()
{exit}(0)
"""
FLAGS = ["--model", "wrn-10-tiny", "--n-labeled", "40", "--n-valid", "100", "--batch-size", "8",
         "--eval-batch-size", "64", "--threads", "1", "--no-progress", "--amp", "none", "--device", "cpu"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("-n", "--launches", type=int, default=50, help="torchrun launches (default 50)")
    p.add_argument("--steps", type=int, default=2, help="training steps per launch (default 2)")
    p.add_argument("--load", type=int, default=0,
                   help="busy-looping processes run beside the launches (default 0: none; e.g. one per core)")
    p.add_argument("--worker", action="store_true",
                   help="launch tests/ddp_accum_worker.py (the DDP test's worker) instead of train.py")
    p.add_argument("--in-flight", choices=["sys.exit", "exit_process"],
                   help="launch the in-flight collective above instead, ending with this exit")
    p.add_argument("--timeout", type=float, default=300, help="seconds before a launch counts as hung")
    p.add_argument("--keep", default=None, help="folder for the output of failed launches (default: a temp one)")
    return p.parse_args()


def spin(deadline: float, parent: int) -> None:
    """Keep one core busy until ``deadline`` or until the benchmark is gone, so a killed benchmark leaves no load."""
    while time.time() < deadline and os.getppid() == parent:
        pass


def start_load(n: int, seconds: float) -> list:
    procs = [multiprocessing.Process(target=spin, args=(time.time() + seconds, os.getpid()), daemon=True)
             for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def command(args, work: str, data: str, i: int) -> list:
    """The torchrun command line of launch ``i``."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    if args.in_flight:
        probe = os.path.join(work, "in_flight.py")
        with open(probe, "w") as f:
            f.write(IN_FLIGHT.format(exit=args.in_flight))
        return torchrun + [probe]
    out = os.path.join(work, f"run{i}")
    flags = FLAGS + ["--data-dir", data, "--out", out, "--steps", str(args.steps), "--eval-every", str(args.steps)]
    script = [os.path.join(TESTS, "ddp_accum_worker.py"), out] if args.worker else [os.path.join(ROOT, "train.py")]
    return torchrun + script + flags


def launch(args, work: str, data: str, i: int, env: dict):
    """(exit code, output) of one launch; a hung launch counts as exit code None."""
    try:
        proc = subprocess.run(command(args, work, data, i), capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired as err:
        return None, f"{err.stdout or ''}{err.stderr or ''}"
    return proc.returncode, proc.stdout + proc.stderr


def main() -> int:
    args = parse()
    work = tempfile.mkdtemp(prefix="ddp-teardown-")
    keep = args.keep or work
    os.makedirs(keep, exist_ok=True)
    data = write_fake_cifar(os.path.join(work, "data"))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, TESTS, os.environ.get("PYTHONPATH")]))}
    load = start_load(args.load, args.launches * args.timeout)
    failed = aborted = 0
    t0 = time.time()
    try:
        for i in range(args.launches):
            code, output = launch(args, work, data, i, env)
            abort = ABORT in output
            failed += code != 0
            aborted += abort
            if code != 0 or abort:
                with open(os.path.join(keep, f"failed{i}.log"), "w") as f:
                    f.write(output)
            print(f"launch {i + 1}/{args.launches}: exit {code}{' ABORT' if abort else ''}  "
                  f"(non-zero so far {failed}, aborts {aborted}, {time.time() - t0:.0f} s)", flush=True)
    finally:
        for p in load:
            p.terminate()
    what = f"in-flight, {args.in_flight}" if args.in_flight else "worker" if args.worker else "train.py"
    print(f"{args.launches} launches ({what}, load {args.load}): "
          f"{failed} exited non-zero, {aborted} printed the abort; logs of failures in {keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
