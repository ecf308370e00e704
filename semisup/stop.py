"""Stopping a run at a step boundary on the scheduler's signal, so that a requeued job continues exactly.

SLURM warns a job before its time limit or a preemption with a signal (submitit asks for SIGUSR2; the sweep's job
wrapper forwards SIGUSR1). ``install`` makes either signal set a flag instead of killing the process; the training
loop reads the flag after each optimizer step, writes a checkpoint at that step and exits with ``REQUEUE_EXIT``.
Rerunning the same command (the requeued job does) resumes from that checkpoint.

This module imports nothing heavy: ``train.py`` installs the handler before it imports torch, because a signal
that lands before the handler is installed kills the process with no checkpoint at all.
"""
import signal

REQUEUE_EXIT = 75  # EX_TEMPFAIL: "try again later", which is what a requeue does
SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
_requested = []  # the signal numbers received, in order


class StopForRequeue(Exception):
    """Raised by the training loop once it has checkpointed at ``step`` after a stop signal."""

    def __init__(self, step: int):
        super().__init__(f"stopped at step {step} for requeue; rerun resumes")
        self.step = step


def _handler(signum, frame) -> None:
    _requested.append(signum)


def install() -> None:
    """Catch SIGUSR1 and SIGUSR2 from now on, then deliver any that arrived while they were blocked.

    The sweep's job wrapper starts train.py with both signals blocked, so one sent during Python's start-up
    waits here instead of killing the process.
    """
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


def requested() -> bool:
    """Whether a stop signal has arrived since ``install``."""
    return bool(_requested)


def reset() -> None:
    """Forget the signals received so far (for a process that trains more than one run)."""
    _requested.clear()
