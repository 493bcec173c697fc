"""Validation of sensor jobs and lower bounds on the bundles and node-seconds any plan needs."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from ..errors import BundlingError
from .records import MEM_TOL_GB, Job, Node, exposure_words


def validate_jobs(jobs: Iterable[Job], node: Node) -> list[Job]:
    """Check every job against the node; return them as a list.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the jobs, as a list.

    Raises:
        BundlingError: a job's ``mem_gb`` or ``runtime_s`` is NaN, infinite or negative; one
                       sensor plus its visit overhead needs more than a node, or runs longer than
                       the time limit; a (visit, snap, det_name) appears twice.  The message names the
                       visit and the sensor.
    """
    jobs = list(jobs)
    seen: set[tuple[tuple[int, int], str]] = set()
    for job in jobs:
        where = f"{exposure_words(job.visit, job.snap)} {job.det_name}"
        if isinstance(job.visit, bool) or not isinstance(job.visit, (int, np.integer)):
            raise BundlingError(f"{where}: the visit is not an integer ({job.visit!r})", "fix the job list")
        if isinstance(job.snap, bool) or not isinstance(job.snap, (int, np.integer)) or job.snap < 0:
            raise BundlingError(f"{where}: the snap is not an integer >= 0 ({job.snap!r})", "fix the job list")
        if not isinstance(job.det_name, str) or not job.det_name:
            raise BundlingError(f"{where}: the sensor name is empty or not text ({job.det_name!r})",
                                "fix the job list")
        for name in ("mem_gb", "runtime_s"):
            value = getattr(job, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise BundlingError(f"{where}: {name} is not a number ({value!r})", "fix the estimate")
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise BundlingError(f"{where}: {name} is {value}", "fix the estimate (it must be finite and >= 0)")
        need = job.mem_gb + node.visit_overhead_gb
        if need > node.memory_gb + MEM_TOL_GB:
            raise BundlingError(
                f"{where}: needs {need:g} GB (mem_gb {job.mem_gb:g} + visit overhead "
                f"{node.visit_overhead_gb:g}) but a node has {node.memory_gb:g} GB",
                "use a node (partition) with more memory, or lower the estimate")
        if job.runtime_s > node.time_limit_s:
            raise BundlingError(
                f"{where}: runtime_s {job.runtime_s:g} exceeds the time limit of {node.time_limit_s:g} s",
                "use a partition with a longer time limit, or lower the estimate")
        key = (job.exposure, job.det_name)
        if key in seen:
            raise BundlingError(f"{where}: listed twice", "remove the duplicate row")
        seen.add(key)
    return jobs


def lower_bound(jobs: Sequence[Job], node: Node) -> int:
    """``max(ceil(sum mem_gb / (M - V)), ceil(n / C))``: no plan needs fewer bundles.

    Valid because every non-empty bundle pays at least one visit overhead V.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the bound (0 for no jobs).
    """
    if not jobs:
        return 0
    total = math.fsum(j.mem_gb for j in jobs)
    return max(_ceil(total / (node.memory_gb - node.visit_overhead_gb)), _ceil(len(jobs) / node.cores))


def strong_lower_bound(jobs: Sequence[Job], node: Node) -> int:
    """A bound at least as tight as :func:`lower_bound` that counts overheads per visit.

    Visit ``v`` (``n_v`` sensors, ``S_v`` GB) appears in at least
    ``k_v = max(ceil(S_v / (M - V)), ceil(n_v / C))`` bundles and pays V in each, so
    ``N M >= sum mem_gb + V sum_v k_v``.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the bound (0 for no jobs).
    """
    if not jobs:
        return 0
    mem: dict[tuple[int, int], float] = {}
    count: dict[tuple[int, int], int] = {}
    for job in jobs:
        mem[job.exposure] = mem.get(job.exposure, 0.0) + job.mem_gb
        count[job.exposure] = count.get(job.exposure, 0) + 1
    free = node.memory_gb - node.visit_overhead_gb
    k = {v: max(_ceil(mem[v] / free), _ceil(count[v] / node.cores)) for v in mem}
    total = math.fsum(mem.values())
    overheads = _ceil((total + node.visit_overhead_gb * sum(k.values())) / node.memory_gb)
    return max(lower_bound(jobs, node), max(k.values()), overheads)


def node_seconds_bound(jobs: Sequence[Job], node: Node) -> float:
    """A lower bound on the node-seconds of any plan.

    With runtimes sorted ``t_1 >= t_2 >= ... (t_{n+1} = 0)``, node-seconds are
    ``sum_k (t_k - t_{k+1}) N_k`` where ``N_k`` counts the bundles holding any of the k slowest
    jobs, and ``N_k >= max(ceil(k / C), ceil(their mem_gb / (M - V)))``.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the bound, seconds (0 for no jobs).
    """
    ordered = sorted(jobs, key=lambda j: -j.runtime_s)
    total, mem = 0.0, 0.0
    free = node.memory_gb - node.visit_overhead_gb
    for k, job in enumerate(ordered, start=1):
        mem += job.mem_gb
        nxt = ordered[k].runtime_s if k < len(ordered) else 0.0
        total += (job.runtime_s - nxt) * max(_ceil(k / node.cores), _ceil(mem / free))
    return total


def _ceil(x: float) -> int:
    """ceil with a little slack for rounding: 3.0000000001 -> 3."""
    return int(math.ceil(x - 1e-9))
