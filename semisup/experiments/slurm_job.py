"""What one SLURM array task runs: ``python train.py ARGS`` for one run folder, requeued on the scheduler's signal.

submitit calls ``TrainJob.__call__`` in the job and, when SLURM sends the warning signal before a time limit or a
preemption (SIGUSR2), ``TrainJob.checkpoint``: that forwards SIGUSR1 to train.py, which finishes its step, writes a
checkpoint at that step and exits (``stop.REQUEUE_EXIT``); submitit then requeues the task, whose new
``__call__`` starts train.py again in the same folder, and train.py resumes from that checkpoint.

With several tasks per run (one per GPU) each task runs one train.py rank, with torch.distributed's environment
(MASTER_ADDR, RANK, WORLD_SIZE, LOCAL_RANK) taken from SLURM through submitit; the ranks agree on the stop step.
"""
import os
import signal
import subprocess
import sys
import time
from typing import List, Optional, Sequence

import submitit

from ..stop import REQUEUE_EXIT, SIGNALS

STOP_WAIT_S = 600  # at most this long for train.py to checkpoint after the signal (SLURM kills it anyway)
REQUEUE_WAIT_S = 120  # a rank whose train.py stopped for a requeue waits this long for rank 0's requeue


def last_line(path: str, limit: int = 65536) -> str:
    """The last non-empty line of a log (the last progress-bar refresh, for a line of carriage returns)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [part.strip() for line in text.splitlines() for part in line.split("\r") if part.strip()]
    return lines[-1] if lines else ""


def _block_stop_signals() -> None:
    """In the child before exec: hold SIGUSR1/SIGUSR2 until train.py's handler is in (stop.install)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def _wait_pid(pid: int, timeout: float) -> bool:
    """Reap ``pid`` within ``timeout`` seconds; True once it is gone. Does not touch Popen's wait lock, which
    the interrupted ``Popen.wait`` in ``__call__`` may be holding while this runs in the signal handler."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        time.sleep(0.1)
    return False


class TrainJob(submitit.helpers.Checkpointable):
    """One train.py run per call, in ``cwd``, its output appended to RUN/train.log (rank k > 0: train.rank<k>.log)."""

    def __init__(self, train_py: str, cwd: str, python: str = sys.executable):
        self.train_py, self.cwd, self.python = train_py, cwd, python
        self._pid: Optional[int] = None

    def _environment(self) -> dict:
        env = dict(os.environ)
        if submitit.JobEnvironment().num_tasks > 1:
            dist = submitit.helpers.TorchDistributedEnvironment()
            env.update(MASTER_ADDR=dist.master_addr, MASTER_PORT=str(dist.master_port), RANK=str(dist.rank),
                       WORLD_SIZE=str(dist.world_size), LOCAL_RANK=str(dist.local_rank),
                       LOCAL_WORLD_SIZE=str(dist.local_world_size))
        return env

    def _log_path(self, out: str) -> str:
        rank = submitit.JobEnvironment().global_rank
        return os.path.join(out, "train.log" if rank == 0 else f"train.rank{rank}.log")

    def __call__(self, argv: Sequence[str], out: str) -> str:
        os.makedirs(os.path.join(self.cwd, out), exist_ok=True)
        log_path = os.path.join(self.cwd, self._log_path(out))
        with open(log_path, "a") as log:
            proc = subprocess.Popen([self.python, self.train_py, *argv], cwd=self.cwd, env=self._environment(),
                                    stdout=log, stderr=subprocess.STDOUT, preexec_fn=_block_stop_signals)
            self._pid = proc.pid
            rc = proc.wait()
        self._pid = None
        if rc == 0:
            return out
        if rc == REQUEUE_EXIT:  # stopped by the scheduler's signal: submitit's handler requeues this task
            time.sleep(REQUEUE_WAIT_S)
        raise RuntimeError(f"train.py exited with code {rc} in {out}: {last_line(log_path)}")

    def checkpoint(self, argv: List[str], out: str) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on the scheduler's signal: stop train.py at a step boundary, then requeue."""
        pid = self._pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
            if not _wait_pid(pid, STOP_WAIT_S):
                os.kill(pid, signal.SIGKILL)
        return submitit.helpers.DelayedSubmission(TrainJob(self.train_py, self.cwd, self.python), argv, out)
