"""``sweep.py status OUT``: one line per run of a sweep folder, whichever launcher ran it, and a count per state.

The states come from the run folders (summary.json, metrics.jsonl, the last checkpoint's step, RUN/local.json for
local runs, RUN/slurm.json for submitted ones) and, for submitted runs, from ``squeue`` (never sacct, which a
cluster without accounting lacks). Without a reachable scheduler it says so and reports from the folders alone.
"""
import os
import pickle
import socket
import sys
import zipfile
from typing import Dict, List, Optional, Tuple

from ..records import read_json, read_metrics
from . import slurm
from .launch import LOCAL_JSON, LOG
from .plan_record import PLAN
from .slurm_job import last_line

STATES = ("finished", "running", "queued", "failed", "stopped", "unknown", "not started")
MARKERS = ("config.json", slurm.SLURM_JSON, LOCAL_JSON)


class _Anything(dict):
    """What every class in a checkpoint's pickle becomes here: nothing from the file is ever called."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state) -> None:
        pass

    def append(self, item) -> None:
        pass

    def extend(self, items) -> None:
        pass


class _StepReader(pickle.Unpickler):
    def find_class(self, module, name):
        return _Anything

    def persistent_load(self, pid):
        return None


def checkpoint_step(path: str) -> Optional[int]:
    """The ``step`` saved in a checkpoint, read from its pickle without torch and without running its code."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            with archive.open(name) as f:
                step = _StepReader(f).load().get("step")
    except Exception:  # a damaged or foreign file, whatever it raises: no step to report
        return None
    return step if isinstance(step, int) else None


def step_reached(folder: str) -> int:
    steps = [int(h["step"]) for h in read_metrics(os.path.join(folder, "metrics.jsonl"))[-1:]]
    steps.append(int((read_json(os.path.join(folder, "summary.json")) or {}).get("step", 0)))
    last = os.path.join(folder, "last.pt")
    if os.path.exists(last):
        steps.append(checkpoint_step(last) or 0)
    return max(steps)


def run_folders(root: str) -> List[str]:
    """The run folders under ``root``: those a sweep planned there and those holding a run's files."""
    plan = read_json(os.path.join(root, PLAN)) or {}
    found = {os.path.normpath(os.path.join(root, rel)) for rel in plan.get("runs", [])}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if folder != root and any(marker in files for marker in MARKERS):
            found.add(os.path.normpath(folder))
            dirs[:] = []
    return sorted(found)


def _local_alive(rec: dict) -> bool:
    if rec.get("host") != socket.gethostname() or not rec.get("pid"):
        return False
    try:
        with open(f"/proc/{int(rec['pid'])}/cmdline", "rb") as f:
            return b"train.py" in f.read()
    except OSError:
        return False


def _launch_state(folder: str, states: Optional[Dict]) -> Tuple[str, str]:
    """(state, job) of an unfinished run from its launcher's record: the newer of local.json and slurm.json."""
    local, submitted = read_json(os.path.join(folder, LOCAL_JSON)), slurm.record(folder)
    if submitted and (not local or submitted.get("submitted", "") >= local.get("started", "")):
        job = str(submitted.get("job_id"))
        if states is None:
            return "unknown", job
        state = states.get(job, ("", ""))[0]
        return ("queued" if state in slurm.QUEUED else "running" if state in slurm.RUNNING else "failed"), job
    if local:
        job = f"pid {local.get('pid')}"
        if _local_alive(local):
            return "running", job
        return ("failed" if local.get("returncode") not in (None, 0, 75) else "stopped"), job
    return ("stopped" if os.path.exists(os.path.join(folder, "config.json")) else "not started"), "-"


def describe(folder: str, states: Optional[Dict]) -> dict:
    """One run's state, step, job and last log line."""
    config = read_json(os.path.join(folder, "config.json")) or {}
    summary = read_json(os.path.join(folder, "summary.json")) or {}
    steps = config.get("steps")
    state, job = _launch_state(folder, states)
    if summary and steps and int(summary.get("step", 0)) >= int(steps):
        state = "finished"
    log = os.path.join(folder, LOG)
    if not os.path.exists(log):
        log = (slurm.record(folder) or {}).get("stderr", "")
    return {"folder": folder, "state": state, "step": step_reached(folder), "steps": steps, "job": job,
            "last": last_line(log) if log else ""}


def report(root: str, print_=print) -> int:
    """Print the status of every run under ``root``; returns 2 when there is no such folder."""
    if not os.path.isdir(root):
        print(f"sweep.py: error: {root} is not a folder", file=sys.stderr)
        return 2
    states, reason = slurm.job_states()
    if states is None:
        print_(f"no scheduler reachable ({reason}); reporting from the run folders only")
    rows = [describe(folder, states) for folder in run_folders(root)]
    width = max([len(os.path.relpath(r["folder"], root)) for r in rows] + [3])
    for r in rows:
        steps = f"{r['step']}/{r['steps']}" if r["steps"] else str(r["step"])
        print_(f"{os.path.relpath(r['folder'], root):<{width}}  {r['state']:<11}  step {steps:<15}  "
               f"{r['job']:<12}  {r['last'][:160]}")
    counts = {state: sum(r["state"] == state for r in rows) for state in STATES}
    print_(", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no runs")
    return 0
