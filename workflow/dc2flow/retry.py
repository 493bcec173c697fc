"""Why the last attempt of a job failed, and what its retry asks for.

A render's retry (Snakemake ``--retries``) grows its memory only after an out-of-memory kill and its
wall time only after a time-limit kill, as Rubin's BPS does with ``memoryMultiplier``; a job that
was cancelled, lost with its node or failed for any other reason comes back with the same request.

How a retry learns why the last attempt failed:

1. The job leaves an *attempt record* (``--attempt-record FILE``, a global ``dc2flow`` option the
   render rule passes): written atomically when the verb starts, removed when it succeeds. It holds
   the attempt's request (``mem_mb``, ``runtime_min``), its Slurm job id (``$SLURM_JOB_ID``) and the
   out-of-memory kill count of the cgroup the job runs in. A job killed outright (SIGKILL by the
   kernel's OOM killer or by Slurm) cannot write anything when it dies, so the record is written
   first and read by the retry.
2. The retry's resource function (``render_mem_mb`` in ``workflow/rules/common.smk``; Snakemake
   passes it ``attempt``) reads the record only when ``attempt > 1``: attempt 1 never looks, and
   a missing record (the usual case) costs one failed ``stat``. The cause comes from

   - Slurm's accounting, for a record with a job id: ``sacct -j ID`` (one call per Slurm job, cached:
     a bundle's members share it). ``OUT_OF_MEMORY`` (cgroup enforcement, ``ConstrainRAMSpace``)
     or a step that ended by signal 9 with its MaxRSS at or above its memory request (polling
     enforcement, ``JobAcctGatherParams=OverMemoryKill``, as on scripts/slurm-cluster.sh's cluster)
     is a memory kill; ``TIMEOUT`` a time-limit kill; anything else (``CANCELLED``, ``NODE_FAIL``,
     ``FAILED`` with an exit code) is neither.
   - the cgroup's own counter, for a job run without Slurm (the local executor runs jobs in the
     driver's cgroup): ``oom_kill`` in ``memory.events`` (v2) or ``memory.oom_control`` (v1) above
     the count recorded at the start is a memory kill. Another process of the same cgroup killed
     for memory in the meantime counts too: locally the OOM killer's victim is the largest process,
     which is a render.

3. :func:`next_request` turns the last request and the cause into the next request: memory times
   ``growth`` after a memory kill, never above ``mem_cap_mb`` (the node's share of this member:
   a bundle's members run side by side and Snakemake adds their requests up for the group job),
   wall time times ``growth`` after a time-limit kill, capped likewise; else the same request.
   Growth compounds through the records (attempt 3 after two memory kills asks ``growth**2``), and
   never shrinks below the first attempt's request.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import time
from dataclasses import dataclass

from .io import write_json

#: what :func:`cause` returns
OUT_OF_MEMORY = "out_of_memory"
TIME_LIMIT = "time_limit"
OTHER = "other"

#: a step killed by signal 9 counts as a memory kill when its MaxRSS reached this share of its
#: request: OverMemoryKill samples RSS once per JobAcctGatherFrequency and kills at the first
#: sample above the request, so the recorded peak is at or above it; 0.95 allows for rounding
#: (sacct reports MaxRSS in KiB, ReqMem in MiB)
RSS_AT_LIMIT = 0.95


@dataclass(frozen=True)
class Attempt:
    """What a job recorded when it started (the record of :func:`begin`)."""

    mem_mb: int
    runtime_min: int
    slurm_job_id: str | None = None
    oom_counter: str | None = None  # the cgroup file holding the oom_kill count
    oom_kills: int | None = None  # its count when the attempt started

    @classmethod
    def read(cls, path: str | os.PathLike) -> Attempt | None:
        """The record at ``path``, or None if there is none (or it is unreadable: no evidence)."""
        try:
            with open(path) as fh:
                data = json.load(fh)
            return cls(mem_mb=int(data["mem_mb"]), runtime_min=int(data["runtime_min"]),
                       slurm_job_id=data.get("slurm_job_id"), oom_counter=data.get("oom_counter"),
                       oom_kills=data.get("oom_kills"))
        except (OSError, ValueError, KeyError, TypeError):
            return None


# --- the job's side ------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The global ``dc2flow`` options of the attempt record."""
    parser.add_argument("--attempt-record", metavar="FILE",
                        help="JSON record of this attempt (its request, Slurm job id, cgroup OOM count), "
                             "written at the start and removed on success: a retry reads it to grow "
                             "memory only after an out-of-memory kill (dc2flow.retry)")
    parser.add_argument("--attempt-mem-mb", type=int, metavar="MB",
                        help="this attempt's memory request, for --attempt-record")
    parser.add_argument("--attempt-runtime-min", type=int, metavar="MIN",
                        help="this attempt's wall-time request, for --attempt-record")


def begin(args: argparse.Namespace) -> None:
    """Write the attempt record of ``args`` (if asked for) before the verb runs."""
    if not getattr(args, "attempt_record", None):
        return
    counter = oom_counter_file()
    write_json(args.attempt_record, {
        "mem_mb": args.attempt_mem_mb or 0, "runtime_min": args.attempt_runtime_min or 0,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "host": os.uname().nodename, "pid": os.getpid(),
        "oom_counter": counter, "oom_kills": read_oom_kills(counter) if counter else None,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def succeeded(args: argparse.Namespace) -> None:
    """The verb succeeded: its attempt record is history."""
    record = getattr(args, "attempt_record", None)
    if record:
        try:
            os.remove(record)
        except FileNotFoundError:
            pass


def oom_counter_file(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> str | None:
    """The file counting out-of-memory kills in this process's memory cgroup, if readable."""
    try:
        lines = open(proc_cgroup).read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        candidates = []
        if controllers == "":  # cgroup v2
            candidates = [f"{root}{path}/memory.events", f"{root}/unified{path}/memory.events"]
        elif "memory" in controllers.split(","):  # cgroup v1
            candidates = [f"{root}/memory{path}/memory.oom_control", f"{root}/memory/memory.oom_control"]
        for file in candidates:
            if read_oom_kills(os.path.normpath(file)) is not None:
                return os.path.normpath(file)
    return None


def read_oom_kills(file: str) -> int | None:
    """The ``oom_kill`` count in a cgroup's ``memory.events`` or ``memory.oom_control``."""
    try:
        with open(file) as fh:
            for line in fh:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


# --- the retry's side ----------------------------------------------------------------------------

def _mem_mb(text: str) -> float | None:
    """sacct's ``MaxRSS`` (``123456K``) or ``ReqMem`` (``2000M``, ``2000Mn``, ``2G``) in MiB."""
    text = text.strip().rstrip("nc")  # Slurm < 21.08 appends n (per node) or c (per CPU)
    if not text:
        return None
    scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 ** 2}
    try:
        if text[-1].upper() in scale:
            return float(text[:-1]) * scale[text[-1].upper()]
        return float(text) / 2**20  # bytes
    except ValueError:
        return None


def classify_sacct(lines: list[str]) -> str:
    """The cause of a Slurm job's end from ``sacct -n -P -o JobID,State,ExitCode,MaxRSS,ReqMem``.

    Rows: the job and its steps. A memory kill: any row ``OUT_OF_MEMORY``, or a row ended by
    signal 9 (ExitCode ``0:9``, or state FAILED/CANCELLED with it) whose MaxRSS is at least
    :data:`RSS_AT_LIMIT` of the job's ReqMem. A time-limit kill: any row ``TIMEOUT``.
    """
    rows = [line.split("|") for line in lines if line.strip()]
    rows = [row + [""] * (5 - len(row)) for row in rows]
    states = [row[1].split()[0] if row[1].strip() else "" for row in rows]
    if "OUT_OF_MEMORY" in states:
        return OUT_OF_MEMORY
    req = max((m for m in (_mem_mb(row[4]) for row in rows) if m), default=None)
    for row in rows:
        signal = row[2].partition(":")[2]
        rss = _mem_mb(row[3])
        if signal == "9" and req and rss and rss >= RSS_AT_LIMIT * req:
            return OUT_OF_MEMORY
    if "TIMEOUT" in states:
        return TIME_LIMIT
    return OTHER


_SLURM_CAUSES: dict[str, str] = {}


def slurm_cause(job_id: str) -> str | None:
    """The cause of Slurm job ``job_id``'s end (cached: a bundle's members share one job), or None
    if accounting cannot say (no sacct, no record yet; not cached, so a later call asks again)."""
    if job_id in _SLURM_CAUSES:
        return _SLURM_CAUSES[job_id]
    try:
        proc = subprocess.run(["sacct", "-j", job_id, "-n", "-P", "-o", "JobID,State,ExitCode,MaxRSS,ReqMem"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not any(line.strip() for line in lines):
        return None
    _SLURM_CAUSES[job_id] = classify_sacct(lines)
    return _SLURM_CAUSES[job_id]


def cause(attempt: Attempt) -> str | None:
    """Why the attempt of this record failed: OUT_OF_MEMORY, TIME_LIMIT, OTHER, or None (unknown)."""
    if attempt.slurm_job_id:
        return slurm_cause(attempt.slurm_job_id)
    if attempt.oom_counter and attempt.oom_kills is not None:
        now = read_oom_kills(attempt.oom_counter)
        if now is not None:
            return OUT_OF_MEMORY if now > attempt.oom_kills else OTHER
    return None


def next_request(first_mem_mb: int, first_runtime_min: int, last: Attempt | None, why: str | None,
                 growth: float, mem_cap_mb: float, runtime_cap_min: float) -> tuple[int, int]:
    """(mem_mb, runtime_min) of a retry: the last attempt's request, grown only for its cause.

    ``first_*`` is the first attempt's request (the plan's), the floor; ``last`` the last attempt's
    record (None: no evidence, the first request again); ``why`` its :func:`cause`. The memory cap
    ``mem_cap_mb`` is this member's share of the node; neither cap goes below the first request.
    """
    mem, minutes = first_mem_mb, first_runtime_min
    if last is not None:
        mem, minutes = max(mem, last.mem_mb), max(minutes, last.runtime_min)
        if why == OUT_OF_MEMORY:
            mem = mem * growth
        elif why == TIME_LIMIT:
            minutes = minutes * growth
    mem = max(first_mem_mb, min(mem, mem_cap_mb))
    minutes = max(first_runtime_min, min(minutes, runtime_cap_min))
    return int(mem), int(minutes)


@functools.lru_cache(maxsize=4096)
def _read(path: str, _mtime_ns: int) -> Attempt | None:
    return Attempt.read(path)


def last_attempt(path: str) -> tuple[Attempt | None, str | None]:
    """The record at ``path`` and its cause (cached on the record's mtime: Snakemake calls a
    resource function several times per job); (None, None) without a record."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None, None
    last = _read(path, mtime)
    return last, (cause(last) if last else None)
