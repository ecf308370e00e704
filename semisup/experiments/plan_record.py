"""OUT/sweep-runs.json: every run folder a sweep command planned, written by both launchers, read by ``status``."""
import os
from typing import Sequence

from ..records import read_json, write_json

PLAN = "sweep-runs.json"  # OUT/sweep-runs.json: every run folder a sweep command planned, relative to OUT


def record_plan(out: str, runs: Sequence) -> None:
    """Add the runs (``sweep.Run``) to OUT/sweep-runs.json, so that ``status`` lists the ones not started yet."""
    path = os.path.join(out, PLAN)
    known = (read_json(path) or {}).get("runs", [])
    new = [os.path.relpath(run.out, out) for run in runs]
    os.makedirs(out, exist_ok=True)
    write_json({"runs": known + [r for r in new if r not in known]}, path)
