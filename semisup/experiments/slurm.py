"""A sweep on a SLURM cluster: the runs that are neither finished nor queued go out as one job array (submitit).

Each array task is one train.py run in its own folder (``slurm_job.TrainJob``), requeued by submitit when SLURM
signals a time limit or a preemption; RUN/slurm.json records the job id and the submitit folder. What is queued
or running is read from ``squeue`` (never from sacct, which clusters without accounting lack), and every call to a
SLURM command has a timeout.
"""
import argparse
import getpass
import os
import re
import shutil
import subprocess
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ..config import Config, ConfigError
from ..records import read_json, write_json
from .plan_record import record_plan

SLURM_JSON = "slurm.json"
COMMAND_TIMEOUT_S = 30
QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"})
RUNNING = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"})
_TIME = re.compile(r"(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?")


def parse_time(text: str) -> int:
    """SLURM's time formats (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in whole minutes, rounded up."""
    match = _TIME.fullmatch(text.strip())
    if not match:
        raise ConfigError(f"--slurm-time {text!r} is not a SLURM time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or "
                          f"D-HH:MM:SS)")
    days, a, b, c = (int(v) if v is not None else None for v in match.group("days", "a", "b", "c"))
    if days is None and c is None:  # MM or MM:SS
        hours, minutes, seconds, bounded = 0, a, b or 0, [(b or 0, 60)]
    elif days is None:  # HH:MM:SS
        hours, minutes, seconds, bounded = a, b, c, [(b, 60), (c, 60)]
    else:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds, bounded = a, b or 0, c or 0, [(a, 24), (b or 0, 60), (c or 0, 60)]
    if any(value >= limit for value, limit in bounded):
        raise ConfigError(f"--slurm-time {text!r} is not a SLURM time (a field is out of range)")
    total = (((days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
    if total < 60:
        raise ConfigError(f"--slurm-time {text!r} is shorter than one minute")
    return -(-total // 60)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The --slurm-* flags of sweep.py (used with --launcher slurm)."""
    group = parser.add_argument_group("SLURM (--launcher slurm)")
    group.add_argument("--slurm-partition", help="partition to submit to (default: the cluster's default)")
    group.add_argument("--slurm-time", default="36:00:00",
                       help="time limit per job (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS); a run that "
                            "reaches it is checkpointed and requeued")
    group.add_argument("--slurm-gpus-per-run", type=int, default=1,
                       help="GPUs per run, one train.py process (task) each; --batch-size stays global; 0 for a "
                            "CPU-only cluster")
    group.add_argument("--slurm-cpus-per-run", type=int, default=4, help="CPU cores per run (split over its tasks)")
    group.add_argument("--slurm-mem", help="memory per job, e.g. 32G (default: the partition's)")
    group.add_argument("--slurm-account", help="account to charge")
    group.add_argument("--slurm-qos", help="quality of service")
    group.add_argument("--slurm-constraint", help="node features, e.g. a100")
    group.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                       help="shell line run in the job before train.py (repeatable), e.g. 'module load cuda' or "
                            "'. ~/venv/bin/activate'")
    group.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                       help="extra sbatch option (repeatable), e.g. --slurm-option mail-type=END")
    group.add_argument("--slurm-folder", help="submitit's folder for job scripts and logs (default OUT/.submitit)")
    group.add_argument("--slurm-signal-delay-s", type=int, default=120,
                       help="seconds before the time limit at which SLURM signals the job to checkpoint")
    group.add_argument("--slurm-max-timeouts", type=int, default=30,
                       help="time limits a run may hit (each one checkpoints and requeues it) before it is given "
                            "up; preemptions do not count")


def _options(pairs: Sequence[str]) -> Dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip("-"):
            raise ConfigError(f"--slurm-option {pair!r} is not KEY=VALUE (e.g. mail-type=END)")
        options[key.strip("-").replace("-", "_")] = value
    return options


def slurm_command(args: Sequence[str]) -> Tuple[int, str]:
    """Run a SLURM command with a timeout: (exit code, stdout or the first line of stderr); 127 if missing."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        return 127, f"{args[0]} is not on the PATH"
    except subprocess.TimeoutExpired:
        return 124, f"{args[0]} did not answer within {COMMAND_TIMEOUT_S} s"
    if proc.returncode:
        return proc.returncode, (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[0]
    return 0, proc.stdout


def check(args: argparse.Namespace) -> Dict:
    """Refuse, before anything is submitted, what the scheduler would refuse or run wrongly; the submitit
    parameters otherwise."""
    if shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm needs SLURM's sbatch on the PATH (not found); run on a login node, "
                          "or use --launcher local")
    minutes = parse_time(args.slurm_time)
    for flag, value, low in (("--slurm-gpus-per-run", args.slurm_gpus_per_run, 0),
                             ("--slurm-cpus-per-run", args.slurm_cpus_per_run, 1),
                             ("--slurm-signal-delay-s", args.slurm_signal_delay_s, 1),
                             ("--slurm-max-timeouts", args.slurm_max_timeouts, 0)):
        if value < low:
            raise ConfigError(f"{flag} must be at least {low} (got {value})")
    if args.slurm_partition:
        rc, out = slurm_command(["sinfo", "-h", "-p", args.slurm_partition, "-o", "%P"])
        if rc:
            raise ConfigError(f"cannot ask SLURM about partition {args.slurm_partition}: {out}")
        if not out.strip():
            known = slurm_command(["sinfo", "-h", "-o", "%P"])[1].split()
            raise ConfigError(f"unknown SLURM partition {args.slurm_partition!r} (this cluster has: "
                              f"{', '.join(p.rstrip('*') for p in known) or 'none'})")
    tasks = max(1, args.slurm_gpus_per_run)
    params = dict(time=minutes, nodes=1, ntasks_per_node=tasks, cpus_per_task=max(1, args.slurm_cpus_per_run // tasks),
                  signal_delay_s=args.slurm_signal_delay_s, setup=list(args.slurm_setup),
                  additional_parameters=_options(args.slurm_option), job_name="semisup-sweep")
    if args.slurm_gpus_per_run:
        params["gpus_per_node"] = args.slurm_gpus_per_run
    for key in ("partition", "mem", "account", "qos", "constraint"):
        if getattr(args, f"slurm_{key}"):
            params[key] = getattr(args, f"slurm_{key}")
    return params


def job_states() -> Tuple[Optional[Dict[str, Tuple[str, str]]], str]:
    """({job id: (state, reason)} for this user's jobs that SLURM still knows (array tasks as 123_4), ""), or
    (None, why) when squeue cannot be reached."""
    rc, out = slurm_command(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T|%r"])
    if rc:
        return None, f"squeue: {out}"
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states, ""


def record(out: str) -> Optional[dict]:
    return read_json(os.path.join(out, SLURM_JSON))


def active_job(out: str, states: Dict[str, Tuple[str, str]]) -> Optional[Tuple[str, str]]:
    """(job id, state) if the run's recorded job is queued or running, else None."""
    rec = record(out)
    if not rec:
        return None
    state = states.get(str(rec.get("job_id")), ("", ""))[0]
    return (rec["job_id"], state) if state in QUEUED | RUNNING else None


def submit(pending: Sequence, configs: Sequence[Config], params: Dict, folder: str, train_py: str,
           max_timeouts: int) -> List[str]:
    """Submit the runs as one job array; write each RUN/slurm.json; returns the job ids."""
    import submitit
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    from .slurm_job import TrainJob

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    setup = [f"export PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}", *params.pop("setup")]
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_timeouts)
    executor.update_parameters(setup=setup, **params)
    cwd = os.getcwd()
    try:
        jobs = executor.map_array(TrainJob(train_py, cwd), [list(r.argv) for r in pending], [r.out for r in pending])
    except (FailedJobError, FailedSubmissionError, subprocess.CalledProcessError, OSError) as err:
        text = str(err).strip().splitlines()
        raise ConfigError(f"sbatch refused the job array: {text[-1] if text else type(err).__name__}") from None
    for run, job in zip(pending, jobs):
        os.makedirs(run.out, exist_ok=True)
        write_json({"job_id": job.job_id, "folder": os.path.abspath(folder), "stdout": str(job.paths.stdout),
                    "stderr": str(job.paths.stderr), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "command": run.command()}, os.path.join(run.out, SLURM_JSON))
    return [job.job_id for job in jobs]


def submit_sweep(runs: Sequence, configs: Sequence[Config], params: Dict, folder: str, train_py: str,
                 max_timeouts: int, finished, out: str, log=print) -> int:
    """Submit the runs that are neither finished nor queued or running, as one job array."""
    states, reason = job_states()
    if states is None:
        raise ConfigError(f"cannot reach SLURM to see what is already queued ({reason})")
    pending, total = [], len(runs)
    for i, (run, cfg) in enumerate(zip(runs, configs), 1):
        done = finished(run, cfg)
        active = None if done is not None else active_job(run.out, states)
        if done is not None:
            log(f"[{i}/{total}] {run.name}: finished at step {done}, skipped")
        elif active:
            log(f"[{i}/{total}] {run.name}: {active[1].lower()} as job {active[0]}, skipped")
        else:
            pending.append((run, cfg))
    record_plan(out, runs)
    if not pending:
        log("nothing to submit")
        return 0
    active = {run.out: active_job(run.out, states) for run in runs}
    job_of = {out: job[0] for out, job in active.items() if job}
    for wave, after in waves(pending, job_of):
        wave_params = {**params, "setup": list(params["setup"]), "additional_parameters": {
            **params.get("additional_parameters", {}), **({"dependency": "afterok:" + ":".join(after)} if after
                                                          else {})}}
        ids = submit([run for run, _ in wave], [cfg for _, cfg in wave], wave_params, folder, train_py,
                     max_timeouts)
        for (run, _), job_id in zip(wave, ids):
            job_of[run.out] = job_id
            log(f"{run.name}: submitted as job {job_id} ({run.out})" + (f", after {', '.join(after)}" if after
                                                                           else ""))
        log(f"submitted {len(ids)} run(s) as job {ids[0].split('_')[0]}; submitit folder {folder}; "
            f"progress: python scripts/sweep.py status {out}")
    return 0


def waves(pending: Sequence[Tuple], job_of: Dict[str, str]):
    """(runs, job ids they wait for) per job array: first the runs that start from nothing still to be submitted,
    then the runs that start from those (SLURM's afterok on their array tasks; a failed one holds its dependents
    back: they stay pending with reason DependencyNeverSatisfied until cancelled)."""
    remaining = list(pending)
    while remaining:
        outs = {run.out for run, _ in remaining}
        wave = [(run, cfg) for run, cfg in remaining if not outs & set(run.needs)]
        remaining = [(run, cfg) for run, cfg in remaining if outs & set(run.needs)]
        yield wave, sorted({job_of[n] for run, _ in wave for n in run.needs if n in job_of})
