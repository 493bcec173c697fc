"""The decomposition of large campaigns: blocks of visits, a merge of partial bundles, and a local search
(:func:`_spill`, :func:`_reinsert`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .records import (MEM_TOL_GB, MERGE_MILP_MAX_ITEMS, REPACK_ATTEMPT_S, REPACK_MAX_NODES, REPACK_RECEIVERS, Job, Node,
                      Plan, _bundle_key, _job_order)
from .bounds import _ceil, strong_lower_bound
from .heuristics import _first_fit, first_fit_decreasing, visit_first_fit
from .milp import _Items, _items_from_jobs, _optimise, _solve_items, _solve_milp


def _decomposed(jobs: list[Job], node: Node, solver: str, time_limit_s: float, block_visits: int | None,
                milp_max_jobs: int, start_from: Plan) -> tuple[Plan, str]:
    """Blocks of visits by the integer program, a merge of their partial bundles, then a local search.

    ``start_from`` (a heuristic plan) replaces the merged plan before the local search if it has
    fewer bundles.  The budget: 30% for a first pass over the blocks, up to 50% with a second try
    of the blocks not proven optimal, 10% for the merge, the rest for :func:`_repack`.
    """
    start = time.perf_counter()
    deadline = start + time_limit_s
    by_visit: dict[tuple[int, int], list[Job]] = {}  # by exposure (visit, snap)
    for job in jobs:
        by_visit.setdefault(job.exposure, []).append(job)
    visits = sorted(by_visit)
    if block_visits is None:
        block_visits = max(1, (milp_max_jobs // 2) // max(len(v) for v in by_visit.values()))
    blocks = [visits[i:i + block_visits] for i in range(0, len(visits), block_visits)]
    plans: list[Plan] = []
    statuses: list[str] = []
    for k, block in enumerate(blocks):  # first pass: an even share of 30% of the budget
        block_time = (start + 0.3 * time_limit_s - time.perf_counter()) / (len(blocks) - k)
        block_jobs = [j for v in block for j in by_visit[v]]
        if len(block_jobs) > milp_max_jobs or block_time < 0.02:  # too big, or out of time
            plan = min(first_fit_decreasing(block_jobs, node), visit_first_fit(block_jobs, node), key=Plan.score)
            status = "heuristic"
        else:
            plan, solved = _solve_milp(block_jobs, node, solver, block_time, runtime_phase=False)
            status = solved.status
        plans.append(plan)
        statuses.append(status)
    # second pass: the blocks left unproven share what the first pass did not use, up to 50%
    retry = [k for k, st in enumerate(statuses) if st not in ("optimal", "heuristic met the lower bound")
             and plans[k].n_bundles > strong_lower_bound(plans[k].jobs(), node)
             and len(plans[k].jobs()) <= milp_max_jobs]
    for n, k in enumerate(retry):
        block_time = (start + 0.5 * time_limit_s - time.perf_counter()) / (len(retry) - n)
        if block_time < 0.1:
            continue
        plans[k], solved = _solve_milp(plans[k].jobs(), node, solver, block_time, plans[k], runtime_phase=False)
        statuses[k] = solved.status + " (second try)"
    bundles = [b for plan in plans for b in plan.bundles]
    counts: dict[str, int] = {}
    for st in statuses:
        counts[st] = counts.get(st, 0) + 1
    merge_time = min(0.1 * time_limit_s, deadline - time.perf_counter())
    merged, merge_status = _merge(bundles, node, solver, merge_time)
    plan = Plan(tuple(merged), node)
    text = (f"{len(blocks)} blocks of {block_visits} visits: "
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + f" ({len(bundles)} bundles); merge: {merge_status}")
    if start_from.n_bundles < plan.n_bundles:
        text += f"; local search from visit-grouped first fit ({start_from.n_bundles}) instead"
        plan = start_from
    lb = strong_lower_bound(jobs, node)
    repacked, repack_status = _repack(list(plan.bundles), node, solver, deadline, lb)
    return Plan(tuple(repacked), node), text + f"; local search: {repack_status}"


def _merge(bundles: list[tuple[Job, ...]], node: Node, solver: str, time_limit_s: float) -> tuple[list, str]:
    """Pack whole bundles into nodes; only bundles some other bundle could join take part."""
    V = node.visit_overhead_gb
    mem = np.array([sum(j.mem_gb for j in b) + V * len({j.exposure for j in b}) for b in bundles])
    cores = np.array([len(b) for b in bundles], dtype=np.int64)
    if len(bundles) < 2:
        return bundles, "nothing to merge"
    # the two smallest of each, so an item is never compared with itself
    m2 = np.partition(mem, 1)[:2]
    c2 = np.partition(cores, 1)[:2]
    other_mem = np.where(mem == m2[0], m2[1], m2[0])
    other_cores = np.where(cores == c2[0], c2[1], c2[0])
    mergeable = (mem + other_mem <= node.memory_gb + MEM_TOL_GB) & (cores + other_cores <= node.cores)
    fixed = [b for b, ok in zip(bundles, mergeable) if not ok]
    loose = [b for b, ok in zip(bundles, mergeable) if ok]
    if len(loose) < 2:
        return bundles, "no partial bundles to merge"
    order = sorted(range(len(loose)), key=lambda k: (-_size(loose[k], node), _bundle_key(loose[k])))
    loose = [loose[k] for k in order]
    items = _Items(np.array([sum(j.mem_gb for j in b) + V * len({j.exposure for j in b}) for b in loose]),
                   np.array([len(b) for b in loose], dtype=np.int64),
                   np.array([max(j.runtime_s for j in b) for b in loose]),
                   -np.ones(len(loose), dtype=np.int64), 0, 0.0, float(node.memory_gb), int(node.cores))
    warm = _first_fit_items(items)
    status = "first fit"
    if len(loose) <= MERGE_MILP_MAX_ITEMS and time_limit_s > 0.1:
        lb = max(_ceil(items.mem.sum() / node.memory_gb), _ceil(items.cores.sum() / node.cores))
        solved = _optimise(items, warm, solver, time_limit_s, lb)
        warm, status = solved.assign, solved.status
    groups: dict[int, list[Job]] = {}
    for b, bundle in zip(warm, loose):
        groups.setdefault(b, []).extend(bundle)
    merged = fixed + [tuple(g) for g in groups.values()]
    return merged, f"{len(loose)} partial bundles into {len(groups)} ({status})"


def _repack(bundles: list[tuple[Job, ...]], node: Node, solver: str, deadline: float,
            lb: int) -> tuple[list[tuple[Job, ...]], str]:
    """Local search after the decomposition: close bundles one visit at a time.

    Visits are tried emptiest own bundle first: :func:`_spill` (moves a few sensors into other
    bundles' room), then :func:`_reinsert` (the integer program), pass after pass, until a pass
    saves nothing, the plan meets ``lb`` or ``deadline`` passes.
    """
    M, C = node.memory_gb, node.cores
    bundles = [tuple(b) for b in bundles]
    spills = reinserts = 0
    failed: set[tuple[int, int]] = set()  # (visit, bundle count) already tried by the program
    improved = True
    while improved and len(bundles) > lb and deadline - time.perf_counter() > 0.1:
        improved = False
        stats = [_BundleStats.of(b, node) for b in bundles]
        fill: dict[int, float] = {}
        for st in stats:
            if len(st.visits) == 1:
                (visit,) = st.visits
                fill[visit] = min(fill.get(visit, math.inf), (M - st.free_mem) / M + (C - st.free_cores) / C)
        for visit in sorted(fill, key=lambda v: (fill[v], v)):
            if len(bundles) <= lb or deadline - time.perf_counter() <= 0.1:
                break
            new = _spill(bundles, stats, visit, node)
            if new is None and (visit, len(bundles)) not in failed:
                result = _reinsert(bundles, [visit], node, solver, deadline)
                if result is not None and result[1] > 0:
                    new = result[0]
                    reinserts += result[1]
                else:
                    failed.add((visit, len(bundles)))
            elif new is not None:
                spills += 1
            if new is not None:
                bundles, improved = new, True
                stats = [_BundleStats.of(b, node) for b in bundles]
    return bundles, f"{spills} bundles closed by moving sensors, {reinserts} by the integer program"


@dataclass(frozen=True)
class _BundleStats:
    free_mem: float   # GB left, after the overheads of the visits present
    free_cores: int
    visits: frozenset

    @classmethod
    def of(cls, bundle: Sequence[Job], node: Node) -> "_BundleStats":
        visits = frozenset(j.exposure for j in bundle)
        used = math.fsum(j.mem_gb for j in bundle) + node.visit_overhead_gb * len(visits)
        return cls(node.memory_gb - used, node.cores - len(bundle), visits)


def _spill(bundles: list[tuple[Job, ...]], stats: list[_BundleStats], visit: int,
           node: Node) -> list[tuple[Job, ...]] | None:
    """Close one of a visit's own bundles by moving some of its sensors into other bundles' room.

    The visit's *own* bundles (holding only it) are F; its sensors there must fit F - 1 of them
    after some go elsewhere.  Candidates to move are taken heaviest first when the visit is short of
    memory, lightest first when it is short of cores (then the other way round); each goes, best
    fit, into a bundle with room
    (a free core, and its memory plus V unless the visit is already there), and after each move
    first fit decreasing tries to repack the rest into F - 1 bundles.  Returns the new bundles, or
    None if the visit cannot give up a bundle this way.  Cheap (no solver) and deterministic.
    """
    V, M, C = node.visit_overhead_gb, node.memory_gb, node.cores
    own = {k for k, st in enumerate(stats) if st.visits == {visit}}
    F = len(own)
    if F == 0:
        return None
    jobs = sorted((j for k in own for j in bundles[k]), key=_job_order)
    total = math.fsum(j.mem_gb for j in jobs)
    short_of_memory = F == 1 or total / ((F - 1) * (M - V)) >= len(jobs) / ((F - 1) * C)
    lightest = jobs[-1].mem_gb
    others = [k for k, st in enumerate(stats)
              if k not in own and st.free_cores >= 1 and st.free_mem >= lightest - MEM_TOL_GB]
    for candidates in ((jobs, jobs[::-1]) if short_of_memory else (jobs[::-1], jobs)):
        out = _spill_in_order(bundles, stats, visit, node, own, candidates, others)
        if out is not None:
            return out
    return None


def _spill_in_order(bundles: list[tuple[Job, ...]], stats: list[_BundleStats], visit: int, node: Node,
                    own: set[int], candidates: Sequence[Job], others: list[int]) -> list[tuple[Job, ...]] | None:
    """:func:`_spill` with one order of candidates (``own``: the visit's bundles; ``others``: the
    bundles that might take some of it)."""
    V, M, C = node.visit_overhead_gb, node.memory_gb, node.cores
    F = len(own)
    jobs = sorted(candidates, key=_job_order)
    total = math.fsum(j.mem_gb for j in jobs)
    free_mem = {k: stats[k].free_mem for k in others}
    free_cores = {k: stats[k].free_cores for k in others}
    has_visit = {k for k in others if visit in stats[k].visits}
    moved: dict[int, list[Job]] = {}
    kept = list(jobs)
    kept_mem, kept_n = total, len(jobs)
    for job in candidates:
        best, best_key = None, None
        for k in others:
            extra = job.mem_gb + (0.0 if k in has_visit else V)
            if free_cores[k] >= 1 and free_mem[k] >= extra - MEM_TOL_GB:
                key = (free_mem[k] - extra, _bundle_key(bundles[k]))
                if best_key is None or key < best_key:
                    best, best_key = k, key
        if best is None:
            continue
        free_mem[best] -= job.mem_gb + (0.0 if best in has_visit else V)
        free_cores[best] -= 1
        has_visit.add(best)
        moved.setdefault(best, []).append(job)
        kept.remove(job)
        kept_mem -= job.mem_gb
        kept_n -= 1
        if kept_n <= (F - 1) * C and kept_mem <= (F - 1) * (M - V) + MEM_TOL_GB:
            packed = _first_fit(kept, node)
            if len(packed) <= F - 1:
                out = [b for n, b in enumerate(bundles) if n not in own and n not in moved]
                out += [bundles[n] + tuple(moved[n]) for n in sorted(moved)]
                out += [tuple(b) for b in packed]
                return out
    return None


def _reinsert(bundles: list[tuple[Job, ...]], visits: Sequence[int], node: Node, solver: str,
              deadline: float) -> tuple[list[tuple[Job, ...]], int] | None:
    """One step of :func:`_repack`: (new bundles, bundles saved), or None when not worth a try."""
    V, M, C = node.visit_overhead_gb, node.memory_gb, node.cores
    S = set(visits)
    own = sorted((j for b in bundles for j in b if j.exposure in S), key=_job_order)
    fresh = [k for k, b in enumerate(bundles) if all(j.exposure in S for j in b)]
    rest = [tuple(j for j in b if j.exposure not in S) for b in bundles]
    room = {k: (M - sum(j.mem_gb for j in rest[k]) - V * len({j.exposure for j in rest[k]}), C - len(rest[k]))
            for k in range(len(bundles)) if rest[k]}
    hosts = [k for k in room if len(rest[k]) < len(bundles[k])]
    others = [k for k, (m, c) in room.items()
              if k not in hosts and c >= 1 and m >= V + own[-1].mem_gb - MEM_TOL_GB]
    others.sort(key=lambda k: (-min((room[k][0] - V) / M, room[k][1] / C), _bundle_key(bundles[k])))
    receivers = hosts + others[:REPACK_RECEIVERS]
    F = len(fresh)
    if F == 0:
        return None
    # could S fit in one fresh bin fewer at all?
    spare_mem = sum(max(0.0, room[k][0] - V) for k in receivers)
    if (math.fsum(j.mem_gb for j in own) > (F - 1) * (M - V) + spare_mem + MEM_TOL_GB
            or len(own) > (F - 1) * C + sum(room[k][1] for k in receivers)):
        return None
    label = {k: n for n, k in enumerate(fresh + receivers)}
    bin_of = {(j.exposure, j.det_name): label[k] for k, b in enumerate(bundles) for j in b if j.exposure in S}
    warm = [bin_of[(j.exposure, j.det_name)] for j in own]
    items = _items_from_jobs(own, node)
    rooms = [room[k] for k in receivers]
    limit = min(REPACK_ATTEMPT_S, deadline - time.perf_counter())
    res = _solve_items(items, F, warm, "count", solver, limit, min_bins=0, max_nodes=REPACK_MAX_NODES,
                       rooms=rooms)
    if res.assign is None:
        return None
    used = len({b for b in res.assign if b < F})
    if used >= F:
        return bundles, 0
    touched = set(fresh) | set(receivers)
    out = [b for k, b in enumerate(bundles) if k not in touched]
    for r, k in enumerate(receivers):
        out.append(rest[k] + tuple(j for j, b in zip(own, res.assign) if b == F + r))
    for n in range(F):
        members = tuple(j for j, b in zip(own, res.assign) if b == n)
        if members:
            out.append(members)
    return out, F - used


def _size(bundle: Sequence[Job], node: Node) -> float:
    mem = sum(j.mem_gb for j in bundle) + node.visit_overhead_gb * len({j.exposure for j in bundle})
    return mem / node.memory_gb + len(bundle) / node.cores


def _first_fit_items(items: _Items) -> list[int]:
    free_mem: list[float] = []
    free_cores: list[int] = []
    assign = []
    for m, c in zip(items.mem, items.cores):
        for b in range(len(free_mem)):
            if free_mem[b] >= m - MEM_TOL_GB and free_cores[b] >= c:
                break
        else:
            b = len(free_mem)
            free_mem.append(items.memory)
            free_cores.append(items.max_cores)
        free_mem[b] -= m
        free_cores[b] -= int(c)
        assign.append(b)
    return assign
