"""TensorBoard scalars written synchronously, so every evaluation is on disk before training goes on.

tensorboardX's ``SummaryWriter`` hands events to a background thread through a queue and writes them to disk
every ``flush_secs`` (120 s); its ``flush()`` does not wait for that queue, so a run killed after an evaluation
could lose the evaluation's scalars. ``EventLog`` writes each event in the calling thread with tensorboardX's own
record writer and event protos (the same file format), and ``flush`` pushes them to the operating system.
"""
import math
import os
import time

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.summary import scalar


def _flat(record: dict):
    for tag, value in record.items():
        if isinstance(value, (list, tuple)):
            yield from ((f"{tag}/{i}", v) for i, v in enumerate(value))
        else:
            yield tag, value


class EventLog:
    """One ``events.out.tfevents.*`` file; ``purge_step`` hides events at or after it from an earlier attempt."""

    def __init__(self, folder: str, purge_step: int = 0):
        self.writer = EventsWriter(os.path.join(folder, "events"))
        if purge_step:  # what SummaryWriter(purge_step=...) writes: TensorBoard drops older events past it
            self.writer.write_event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def add_scalars(self, record: dict, step: int) -> None:
        """One event per finite value (a NaN, e.g. valid_acc without a validation set, has nothing to plot); a
        list (a per-class statistic) as one tag per class, ``tag/<class>``."""
        wall_time = time.time()
        for tag, value in _flat(record):
            if math.isfinite(value):
                self.writer.write_event(Event(wall_time=wall_time, step=step, summary=scalar(tag, value)))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
