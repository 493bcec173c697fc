"""The heuristics: first fit (decreasing), visit-grouped first fit, the runtime refill, DC2's flat rule."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from .records import DC2_SENSOR_GB, DC2_VISIT_GB, MEM_TOL_GB, Job, Node, Plan, _job_order
from .bounds import _ceil, validate_jobs


def _first_fit(ordered: Sequence[Job], node: Node) -> list[list[Job]]:
    """First fit in the given order: each job goes to the first bundle with room, else a new one.

    Room means memory (plus V when the job's visit is not yet in the bundle) and a free core.
    The time limit needs no check: :func:`validate_jobs` keeps every job within it.
    """
    n = len(ordered)
    free_mem = np.empty(n)
    free_cores = np.empty(n, dtype=np.int64)
    bundles: list[list[Job]] = []
    of_visit: dict[tuple[int, int], list[int]] = {}
    V = node.visit_overhead_gb
    for job in ordered:
        nb = len(bundles)
        with_visit = of_visit.setdefault(job.exposure, [])
        fits = (free_cores[:nb] > 0) & (free_mem[:nb] >= job.mem_gb + V - MEM_TOL_GB)
        best = int(np.argmax(fits)) if nb and fits.any() else nb
        for b in with_visit:  # ascending
            if b >= best:
                break
            if free_cores[b] > 0 and free_mem[b] >= job.mem_gb - MEM_TOL_GB:
                best = b
                break
        if best == nb:
            bundles.append([])
            free_mem[nb] = node.memory_gb
            free_cores[nb] = node.cores
        if best not in with_visit:
            free_mem[best] -= V
            with_visit.append(best)
            with_visit.sort()
        bundles[best].append(job)
        free_mem[best] -= job.mem_gb
        free_cores[best] -= 1
    return bundles


def first_fit_decreasing(jobs: Iterable[Job], node: Node) -> Plan:
    """First fit decreasing: the classic bin-packing heuristic, aware of visit overheads.

    Jobs are taken by ``mem_gb`` descending (ties: visit, then det_name) and each goes into the
    first bundle where it fits: its memory, plus V if its visit is not yet in that bundle, within
    the node's memory, and a free core (every valid job is within the time limit); else a new
    bundle is opened.  Deterministic and fast (O(jobs x bundles) with numpy).  Mixing visits freely, it
    pays many overheads per bundle, which is why :func:`plan_bundles` does better.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the :class:`Plan`.

    Raises:
        BundlingError: invalid jobs (see :func:`validate_jobs`).
    """
    jobs = validate_jobs(jobs, node)
    return Plan(tuple(map(tuple, _first_fit(sorted(jobs, key=_job_order), node))), node)


def visit_first_fit(jobs: Iterable[Job], node: Node) -> Plan:
    """First fit with the jobs grouped by visit: visits by need descending (in nodes, the larger of
    memory / (M - V) and sensors / C), each visit's jobs by ``mem_gb`` descending.

    A visit's sensors fill bundles together and only its last ones spill into the room earlier
    visits left, so most bundles pay one overhead.  Used as a candidate and a warm start.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the :class:`Plan`.

    Raises:
        BundlingError: invalid jobs (see :func:`validate_jobs`).
    """
    jobs = validate_jobs(jobs, node)
    mem: dict[tuple[int, int], float] = {}
    count: dict[tuple[int, int], int] = {}
    for job in jobs:
        mem[job.exposure] = mem.get(job.exposure, 0.0) + job.mem_gb
        count[job.exposure] = count.get(job.exposure, 0) + 1
    need = {v: max(mem[v] / (node.memory_gb - node.visit_overhead_gb), count[v] / node.cores) for v in mem}
    ordered = sorted(jobs, key=lambda j: (-need[j.exposure], j.exposure, -j.mem_gb, j.det_name))
    return Plan(tuple(map(tuple, _first_fit(ordered, node))), node)


def _balance(plan: Plan) -> Plan:
    """Group slow sensors together without changing the bundle count (fewer node-seconds).

    Bundles holding the same visits can swap sensors freely (their overheads stay the same), so
    each such group is refilled by first fit in order of runtime descending, into as many
    bundles as before; kept where it lowers the group's node-seconds.  Cheap and deterministic.
    """
    node = plan.node
    groups: dict[frozenset, list[int]] = {}
    for i, bundle in enumerate(plan.bundles):
        groups.setdefault(frozenset(j.exposure for j in bundle), []).append(i)
    out = []
    for visits, members in sorted(groups.items(), key=lambda kv: kv[1][0]):
        bundles = [plan.bundles[i] for i in members]
        if len(bundles) > 1:
            jobs = sorted((j for b in bundles for j in b), key=lambda j: (-j.runtime_s, -j.mem_gb, j.exposure, j.det_name))
            free_mem = [node.memory_gb - node.visit_overhead_gb * len(visits)] * len(bundles)
            new: list[list[Job]] = [[] for _ in bundles]
            for job in jobs:
                b = next((b for b in range(len(new)) if len(new[b]) < node.cores
                          and free_mem[b] >= job.mem_gb - MEM_TOL_GB), None)
                if b is None:
                    break
                new[b].append(job)
                free_mem[b] -= job.mem_gb
            else:
                if all(new) and (sum(max(j.runtime_s for j in b) for b in new)
                                 < sum(max(j.runtime_s for j in b) for b in bundles) - 1e-9):
                    bundles = [tuple(b) for b in new]
        out.extend(bundles)
    return Plan(tuple(out), node)


def dc2_flat_size(node: Node) -> int | None:
    """Sensors per bundle under DC2's flat rule: ``min(C, floor((M - 10) / 2))``; None below one."""
    k = min(node.cores, int(math.floor((node.memory_gb - DC2_VISIT_GB) / DC2_SENSOR_GB + 1e-9)))
    return k if k >= 1 else None


def dc2_flat_bundles(jobs: Sequence[Job], node: Node) -> int | None:
    """Bundles DC2's flat rule needs: 2 GB per sensor, 10 GB per visit, one visit per bundle.

    With every sensor charged the same, first fit within a visit fills bundles of
    ``k = min(C, floor((M - 10) / 2))`` sensors, so a visit of ``n_v`` sensors takes
    ``ceil(n_v / k)`` bundles.  For comparison only: the flat charge ignores the estimates.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the count, or None when not even one sensor fits a node under the rule.
    """
    per_bundle = dc2_flat_size(node)
    if per_bundle is None:
        return None
    count: dict[tuple[int, int], int] = {}
    for job in jobs:
        count[job.exposure] = count.get(job.exposure, 0) + 1
    return sum(_ceil(n / per_bundle) for n in count.values())
