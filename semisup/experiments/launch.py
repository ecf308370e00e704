"""Running a sweep's train.py runs on this machine: one after another, or ``--parallel N`` at once.

Each run is its own ``python train.py`` process, so an interrupted sweep leaves every run resumable. RUN/local.json
records the process (pid, host) while it runs and its exit code when it ends, for ``sweep.py status``. In parallel,
each run gets its own GPU (CUDA_VISIBLE_DEVICES) or, on a CPU-only machine, its own share of the cores (CPU
affinity and ``--threads``), and writes its output to RUN/train.log; a failed run does not stop the others.
"""
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..config import ConfigError
from ..records import read_json, write_json

LOCAL_JSON = "local.json"
LOG = "train.log"


def _die_with_parent() -> None:
    """Linux: the run receives SIGTERM when the sweep dies, even by SIGKILL, so no orphan writes its folder."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _record(out: str, **fields) -> None:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCAL_JSON)
    write_json({**(read_json(path) or {}), **fields}, path)


def start_train(train_py: str, argv: Sequence[str], out: str, env: Optional[Dict[str, str]] = None,
                cpus: Optional[Sequence[int]] = None, log=None) -> subprocess.Popen:
    """Start train.py for one run, recorded in RUN/local.json; ``cpus`` pins it to those cores."""
    linux = sys.platform.startswith("linux")

    def prepare() -> None:
        if linux:
            _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    proc = subprocess.Popen([sys.executable, train_py, *argv], env=env, preexec_fn=prepare if linux else None,
                            stdout=log, stderr=subprocess.STDOUT if log else None)
    _record(out, pid=proc.pid, host=socket.gethostname(), started=time.strftime("%Y-%m-%dT%H:%M:%S"),
            returncode=None, log=os.path.abspath(os.path.join(out, LOG)) if log else None)
    return proc


def _finish(proc: subprocess.Popen, out: str) -> int:
    rc = proc.wait()
    _record(out, returncode=rc, ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return rc


def run_train(train_py: str, argv: Sequence[str], out: str) -> int:
    """Run train.py to completion; if the sweep is interrupted meanwhile, stop the run too and re-raise."""
    proc = start_train(train_py, argv, out)
    try:
        return _finish(proc, out)
    except (KeyboardInterrupt, SystemExit):
        proc.terminate()
        _finish(proc, out)
        raise


def say(line: str) -> None:
    """One line in one write: the runs' threads report at once, and print() writes the newline separately."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def no_needs(run) -> List[str]:
    return []


def _not_started(run, waits: Sequence[str]) -> str:
    return f"{run.name}: not started: it starts from {', '.join(waits)}, which did not finish"


def execute(runs: Sequence[Tuple], train_py: str, finished: Callable, log=say,
            blocked: Callable = no_needs) -> List[Tuple]:
    """Run every unfinished run in order; returns the runs that failed with their exit codes (None: a run not
    started because ``blocked(run)`` names runs it starts from that have not finished)."""
    failed = []
    for i, (run, cfg) in enumerate(runs, 1):
        done = finished(run, cfg)
        if done is not None:
            log(f"[{i}/{len(runs)}] {run.name}: finished at step {done}, skipped")
            continue
        waits = blocked(run)
        if waits:
            log(f"[{i}/{len(runs)}] {_not_started(run, waits)}")
            failed.append((run, None))
            continue
        log(f"[{i}/{len(runs)}] {run.name}: {run.command()}")
        rc = run_train(train_py, run.argv, run.out)
        if rc:
            log(f"[{i}/{len(runs)}] {run.name}: failed with exit code {rc}")
            failed.append((run, rc))
        if rc < 0:  # killed by a signal from outside: someone is stopping the work, not a broken run
            log(f"[{i}/{len(runs)}] {run.name} was killed by signal {-rc}: stopping the sweep")
            break
    return failed


def visible_gpus() -> List[str]:
    """The GPUs train.py would see, as CUDA_VISIBLE_DEVICES entries (empty on a CPU-only machine)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def slots(parallel: int, threads_given: bool) -> List[dict]:
    """One slot per concurrent run: its GPU, or its cores and --threads on a CPU-only machine."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1 (got {parallel})")
    gpus = visible_gpus()
    if gpus:
        if parallel > len(gpus):
            raise ConfigError(f"--parallel {parallel} is more than the {len(gpus)} visible GPU(s) "
                              f"({','.join(gpus)}): one run per GPU")
        return [{"env": {"CUDA_VISIBLE_DEVICES": gpu}, "cpus": None, "argv": []} for gpu in gpus[:parallel]]
    cores = sorted(os.sched_getaffinity(0))
    if parallel > len(cores):
        raise ConfigError(f"--parallel {parallel} is more than the {len(cores)} CPU core(s) this machine gives "
                          f"the sweep")
    share = len(cores) // parallel
    return [{"env": {}, "cpus": cores[i * share:(i + 1) * share],
             "argv": [] if threads_given else ["--threads", str(share)]} for i in range(parallel)]


def _where(slot: dict) -> str:
    if slot["env"]:
        return " ".join(f"{k}={v}" for k, v in slot["env"].items())
    return "cores " + ",".join(map(str, slot["cpus"]))


class _Pool:
    """Worker threads, one per slot, each taking the next run that is ready until none is left: a run waits while
    a run it starts from (``blocked``) is still queued or running, and is given up if that one failed."""

    def __init__(self, runs, train_py: str, finished: Callable, log, blocked: Callable = no_needs):
        self.todo, self.train_py, self.finished, self.log = list(enumerate(runs, 1)), train_py, finished, log
        self.total, self.blocked, self.running = len(self.todo), blocked, set()
        self.lock, self.procs, self.failed, self.stopping = threading.Lock(), {}, [], False

    def _take(self):
        """(the next ready item, or None; whether to stop looking): called with the lock held."""
        if self.stopping or not self.todo:
            return None, True
        unfinished = {run.out for _, (run, _) in self.todo} | self.running
        for k, (i, (run, _)) in enumerate(self.todo):
            waits = self.blocked(run)
            if not waits:
                self.running.add(run.out)
                return self.todo.pop(k), True
            if not unfinished & set(waits):  # what it starts from failed: it can never start
                self.todo.pop(k)
                self.failed.append((run, None, None))
                self.log(f"[{i}/{self.total}] {_not_started(run, waits)}")
                return None, False
        return None, False

    def _next(self):
        while True:
            with self.lock:
                item, final = self._take()
            if item is not None or final:
                return item
            time.sleep(0.5)

    def work(self, slot: dict, total: int) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            i, (run, cfg) = item
            try:
                done = self.finished(run, cfg)
                if done is not None:
                    self.log(f"[{i}/{total}] {run.name}: finished at step {done}, skipped")
                    continue
                self._run(i, total, run, slot)
            finally:
                with self.lock:
                    self.running.discard(run.out)

    def _run(self, i: int, total: int, run, slot: dict) -> None:
        argv, log_path = [*run.argv, *slot["argv"]], os.path.join(run.out, LOG)
        os.makedirs(run.out, exist_ok=True)
        self.log(f"[{i}/{total}] {run.name}: started on {_where(slot)}, log {log_path}")
        with open(log_path, "a") as log:
            with self.lock:
                if self.stopping:
                    return
                proc = start_train(self.train_py, argv, run.out, {**os.environ, **slot["env"]}, slot["cpus"], log)
                self.procs[i] = proc
            rc = _finish(proc, run.out)
        with self.lock:
            self.procs.pop(i, None)
            if rc:
                self.failed.append((run, rc, log_path))
        self.log(f"[{i}/{total}] {run.name}: " + (f"failed with exit code {rc} (log {log_path})" if rc else
                                                  "finished"))

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for proc in self.procs.values():
                proc.terminate()


def execute_parallel(runs: Sequence[Tuple], train_py: str, finished: Callable, run_slots: List[dict],
                     log=say, blocked: Callable = no_needs) -> List[Tuple]:
    """Run the unfinished runs, len(run_slots) at a time; returns (run, exit code, log file) for each failure
    (exit code None: not started, as what it starts from failed)."""
    pool = _Pool(runs, train_py, finished, log, blocked)
    threads = [threading.Thread(target=pool.work, args=(slot, len(runs)), daemon=True) for slot in run_slots]
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.5)
    except (KeyboardInterrupt, SystemExit):
        pool.stop()
        for thread in threads:
            thread.join(timeout=60)
        raise
    return pool.failed
